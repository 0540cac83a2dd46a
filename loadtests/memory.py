"""Replica memory stays flat: 100,000 requests through a node that is not autoscaled.

Each node replica keeps the recent requests' figures its autoscaling stats are made of
(``autoscale.stats.ReplicaStats``). Before they were trimmed on every update, a node that Ray
never asked for autoscaling stats kept three entries per request for ever. This script sends
``--requests`` requests (closed loop, ``--concurrency`` callers, over HTTP) through a graph whose
entry is a fused preprocess node and then a ``python`` model node with a deployment of its own
(one replica, no autoscaling), and samples the resident memory (RSS) of the model's replica and
of the ingress replica every ``--every`` requests. Target: from the first sample (after a warm-up
of the same size) to the last, each grows by at most ``--max-growth-mib`` (default 10 MiB;
three entries per request over 90,000 requests would be ~25 MiB).

    python loadtests/memory.py [--requests 100000] [--concurrency 16] [--every 10000]
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import _harness as h

APP = "memory"
ROW = {"inputs": {"x": [1.0, 2.0, 3.0, 4.0]}}


def _graph() -> Any:
    from graphs import Graph, tensor

    g = Graph(APP, inputs=[tensor("x", "FP32", [-1])], ingress={"num_cpus": 0})
    pre = g.preprocess("graphs.examples.passthrough:identity", name="pre")
    model = g.model(
        "ident",
        runtime="python",
        model_class="graphs.examples.passthrough:Identity",
        num_cpus=0,
        num_replicas=1,
    )
    g.entry = pre >> model
    return g


def _rss_mib(deployment: str) -> float:
    """Resident memory of the deployment's (one) running replica, in MiB."""
    import psutil
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    replicas = details["applications"][APP]["deployments"][deployment]["replicas"]
    (replica,) = [r for r in replicas if r["state"] == "RUNNING"]
    return float(psutil.Process(int(replica["pid"])).memory_info().rss) / 2**20


async def _send(url: str, n: int, concurrency: int) -> int:
    """``n`` requests by ``concurrency`` closed-loop callers; the number that failed."""
    import httpx

    left, failed = n, 0
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def caller() -> None:
            nonlocal left, failed
            while left > 0:
                left -= 1
                try:
                    r = await client.post(url, json=ROW)
                    failed += r.status_code != 200
                except Exception:
                    failed += 1

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    return failed


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    from ray import serve

    url = f"{h.BASE_URL}/{APP}/predict"
    samples: list[dict[str, Any]] = []
    failed = 0
    with h.ray_cluster(num_cpus=4):
        serve.run(_graph().build(), name=APP, route_prefix=f"/{APP}")
        h.wait_ready(url, ROW, timeout_s=120)
        every, total = spec["every"], spec["requests"]
        failed += asyncio.run(_send(url, every, spec["concurrency"]))  # warm-up, not counted
        start = time.perf_counter()
        sent = 0
        while True:
            samples.append(
                {
                    "requests": sent,
                    "seconds": round(time.perf_counter() - start, 1),
                    "model_rss_mib": round(_rss_mib("ident"), 1),
                    "ingress_rss_mib": round(_rss_mib("ingress"), 1),
                }
            )
            print(f"[memory] {samples[-1]}", flush=True)
            if sent >= total:
                break
            failed += asyncio.run(_send(url, every, spec["concurrency"]))
            sent += every
        serve.delete(APP)
    return {"samples": samples, "failed": failed, "machine": h.machine_info()}


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    parser.add_argument("--requests", type=int, default=100_000, help="requests measured")
    parser.add_argument("--every", type=int, default=10_000, help="requests between samples")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop callers (16)")
    parser.add_argument("--max-growth-mib", type=float, default=10.0, help="target (10 MiB)")
    h.add_keep_logs(parser)
    args = h.parse(parser, argv, worker)
    if args is None:
        return 0

    from graphs.cluster import RECOMMENDED_ENV

    spec = {"requests": args.requests, "every": args.every, "concurrency": args.concurrency}
    raw = h.run_worker(
        os.path.abspath(__file__),
        spec,
        dict(RECOMMENDED_ENV),
        tag="memory",
        timeout_s=120 + args.requests / 50,
        keep_logs=args.keep_logs,
    )
    samples = raw["samples"]
    first, last = samples[0], samples[-1]
    checks = [
        h.check(
            f"{name} replica RSS growth over {last['requests']:,} requests (MiB)",
            round(last[key] - first[key], 1),
            args.max_growth_mib,
            higher_is_better=False,
        )
        for name, key in (("model (ident)", "model_rss_mib"), ("ingress", "ingress_rss_mib"))
    ]
    rows = [
        [s["requests"], s["seconds"], s["model_rss_mib"], s["ingress_rss_mib"]] for s in samples
    ]
    markdown = "\n".join(
        [
            "# Replica memory under 100k requests",
            "",
            f"{h.measured('memory.py')} A graph `pre` (preprocess, fused into the ingress) "
            "then `ident` (python model, its own deployment, 1 replica, not autoscaled), "
            f"{args.concurrency} closed-loop callers over HTTP, after a warm-up of "
            f"{args.every:,} requests; {raw['failed']} requests failed.",
            "",
            h.md_table(["check", "value", "target", "verdict"], [list(c.values()) for c in checks]),
            "",
            h.md_table(["requests", "seconds", "model RSS MiB", "ingress RSS MiB"], rows),
            "",
            f"Machine: {raw['machine']}",
        ]
    )
    h.emit("memory", markdown, {"spec": spec, **raw, "checks": checks}, checks, args.reports_dir)
    ok = all(c["verdict"] == "PASS" for c in checks) and raw["failed"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
