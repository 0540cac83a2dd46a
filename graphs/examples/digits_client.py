"""Send the held-out digits to a running digits graph and print its accuracy.

``python -m graphs.examples.digits_client [--url http://127.0.0.1:8000/digits] [--oip]``
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

import httpx
import numpy as np

from graphs.examples.digits import ensure_trained


def wait_ready(client: httpx.Client, url: str, seconds: float) -> None:
    """Poll the OIP readiness endpoint until the graph answers (or fail after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if client.get(f"{url}/v2/health/ready").json().get("ready"):
                return
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} was not ready after {seconds:.0f} s")
        time.sleep(1)


def score(
    url: str, *, oip: bool = False, batch: int = 1, limit: int | None = None, wait: float = 0
) -> dict[str, object]:
    """Accuracy of the graph at ``url`` on the held-out digits, and which arms served them."""
    data = np.load(os.path.join(ensure_trained(), "test.npz"))
    x, y = data["x"][:limit], data["y"][:limit]
    arms: collections.Counter[str] = collections.Counter()
    correct = 0
    with httpx.Client(timeout=30) as client:
        if wait:
            wait_ready(client, url, wait)
        for i in range(0, len(x), batch):
            rows = x[i : i + batch]
            if oip:
                body = {
                    "inputs": [
                        {
                            "name": "input",
                            "datatype": "FP32",
                            "shape": list(rows.shape),
                            "data": rows.ravel().tolist(),
                        }
                    ]
                }
                r = client.post(f"{url}/v2/models/digits/infer", json=body)
                r.raise_for_status()
                out = {o["name"]: o["data"] for o in r.json()["outputs"]}
                labels = out["label"]
                arms[r.headers.get("x-served-by", "?").split(",")[2]] += len(rows)
            else:
                r = client.post(f"{url}/predict", json={"inputs": {"input": rows.tolist()}})
                r.raise_for_status()
                body = r.json()
                labels = body["outputs"]["label"]
                arms[body["served_by"][2]] += len(rows)
            correct += int((np.asarray(labels) == y[i : i + batch]).sum())
    return {"images": len(x), "accuracy": round(correct / len(x), 4), "served_by_arm": dict(arms)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/digits")
    parser.add_argument("--oip", action="store_true", help="use the Open Inference Protocol")
    parser.add_argument("--batch", type=int, default=1, help="images per request")
    parser.add_argument("--limit", type=int, help="score only the first N held-out images")
    parser.add_argument("--wait", type=float, default=0, help="seconds to wait for readiness")
    args = parser.parse_args(argv)
    print(
        json.dumps(
            score(args.url, oip=args.oip, batch=args.batch, limit=args.limit, wait=args.wait)
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
