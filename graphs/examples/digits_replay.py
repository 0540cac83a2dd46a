"""Replay the held-out digits against a routed digits graph, optionally posting rewards.

``python -m graphs.examples.digits_replay [--url URL] [--requests 2000] [--feedback]
[--users 500] [--concurrency 8]``

Each request carries an ``X-User-Id`` header (``--users`` distinct users, for sticky A/B) and
one held-out image; with ``--feedback`` the response's feedback token is posted back to
``/feedback`` with reward 1 when the predicted label is right and 0 when it is not. Prints, as
JSON: accuracy, requests per arm (overall and over the last ``--tail`` requests), feedback
answers by status, and the graph's experiment report.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import sys
from typing import Any

import httpx
import numpy as np

from graphs.examples.digits import ensure_trained
from graphs.examples.digits_client import wait_ready


async def replay(
    url: str,
    *,
    requests: int = 2000,
    feedback: bool = False,
    users: int = 500,
    concurrency: int = 8,
    tail: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """Send ``requests`` held-out images (in a seeded random order) and summarise the answers.

    Requests are issued in order by ``concurrency`` workers; with ``feedback`` each worker
    posts the reward before taking its next image, as a labelling client would.
    """
    data = np.load(os.path.join(ensure_trained(), "test.npz"))
    x, y = data["x"], data["y"]
    rng = random.Random(seed)
    order = [rng.randrange(len(x)) for _ in range(requests)]
    user_of = [f"user-{rng.randrange(users)}" for _ in range(requests)]
    arm_of: list[str | None] = [None] * requests
    right = [False] * requests
    statuses: collections.Counter[int] = collections.Counter()
    feedback_statuses: collections.Counter[int] = collections.Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async with httpx.AsyncClient(timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                j = order[i]
                r = await client.post(
                    f"{url}/predict",
                    json={"inputs": {"input": [x[j].tolist()]}},
                    headers={"X-User-Id": user_of[i]},
                )
                statuses[r.status_code] += 1
                if r.status_code != 200:
                    continue
                body = r.json()
                arm_of[i] = body["served_by"][2] if len(body["served_by"]) > 2 else "?"
                right[i] = int(body["outputs"]["label"][0]) == int(y[j])
                if feedback and body.get("feedback_token"):
                    f = await client.post(
                        f"{url}/feedback",
                        json={"token": body["feedback_token"], "reward": float(right[i])},
                    )
                    feedback_statuses[f.status_code] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        report = (await client.get(f"{url}/experiments")).json()

    served = [a for a in arm_of if a is not None]
    last = [a for a in arm_of[-tail:] if a is not None]
    return {
        "requests": requests,
        "statuses": dict(statuses),
        "accuracy": round(sum(right) / max(1, len(served)), 4),
        "served_by_arm": dict(collections.Counter(served)),
        f"last_{tail}_by_arm": dict(collections.Counter(last)),
        "feedback_statuses": dict(feedback_statuses),
        "experiments": report,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/digits")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--feedback", action="store_true", help="post a reward per response")
    parser.add_argument("--users", type=int, default=500, help="distinct X-User-Id values")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tail", type=int, default=500, help="size of the 'last N' window")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wait", type=float, default=0, help="seconds to wait for readiness")
    args = parser.parse_args(argv)
    if args.wait:
        with httpx.Client(timeout=30) as client:
            wait_ready(client, args.url, args.wait)
    result = asyncio.run(
        replay(
            args.url,
            requests=args.requests,
            feedback=args.feedback,
            users=args.users,
            concurrency=args.concurrency,
            tail=args.tail,
            seed=args.seed,
        )
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
