"""Scale to zero: how long the first request waits while an idle node's replica starts.

One private local Ray cluster runs a one-node graph whose python model node (``num_cpus: 0``,
10 ms per request) is autoscaled by servegraph's policy with ``min_replicas: 0`` and a 2 s
downscale cooldown, and the same graph with a 1 s deadline. ``--rounds`` times: wait until the
node has no replica, send one request (the cold start: it waits at the ingress for a replica)
and then one more (warm). Then, at zero again, one request to the graph with the 1 s deadline:
it must come back within the deadline as a 504 naming the node, not hang. Writes
``reports/scale_to_zero.md`` and ``.json``.

    python loadtests/scale_to_zero.py [--rounds 5]
"""

from __future__ import annotations

import os
import time
from typing import Any

import _harness as h

APPS = {"zero": 60.0, "zero_tight": 1.0}  # name -> the graph's deadline (s)
BODY = {"inputs": {"x": [1.0, 2.0, 3.0, 4.0]}}
#: Target: a cold start of this python node on this machine (s), the p50 of the rounds.
COLD_START_TARGET_S = 10.0


def _graph(name: str, timeout_s: float) -> Any:
    from graphs import Graph, tensor

    g = Graph(
        name, inputs=[tensor("x", "FP32", [-1])], ingress={"num_cpus": 0}, timeout_s=timeout_s
    )
    g.entry = g.model(
        "lazy",
        runtime="python",
        model_class="graphs.examples.passthrough:Sleep",
        init_kwargs={"seconds": 0.01},
        num_cpus=0,
        autoscaling={"min_replicas": 0, "max_replicas": 1, "downscale_cooldown_s": 2},
    )
    return g


def _replicas(app: str) -> int:
    from ray import serve

    status = serve.status().applications.get(app)
    return sum(status.deployments["lazy"].replica_states.values()) if status else -1


def _wait_zero(app: str, timeout_s: float = 120.0) -> float:
    started = time.monotonic()
    while _replicas(app) != 0:
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{app}: still {_replicas(app)} replica(s) after {timeout_s} s")
        time.sleep(0.25)
    return time.monotonic() - started


def _post(url: str) -> tuple[int, float, Any]:
    import httpx

    started = time.monotonic()
    r = httpx.post(url, json=BODY, timeout=120)
    return r.status_code, time.monotonic() - started, r.json()


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    from ray import serve

    rounds: list[dict[str, Any]] = []
    with h.ray_cluster(num_cpus=2):
        for name, deadline in APPS.items():
            serve.run(_graph(name, deadline).build(), name=name, route_prefix=f"/{name}")
        h.wait_ready(f"{h.BASE_URL}/zero/predict", BODY, timeout_s=120)
        for i in range(spec["rounds"]):
            idle = _wait_zero("zero")
            code, cold, _ = _post(f"{h.BASE_URL}/zero/predict")
            warm_code, warm, _ = _post(f"{h.BASE_URL}/zero/predict")
            rounds.append(
                {
                    "round": i + 1,
                    "to_zero_s": round(idle, 1),
                    "cold_status": code,
                    "cold_s": round(cold, 2),
                    "warm_status": warm_code,
                    "warm_ms": round(1000 * warm, 1),
                }
            )
            print(f"[scale_to_zero] {rounds[-1]}", flush=True)
        _wait_zero("zero_tight")
        code, late, body = _post(f"{h.BASE_URL}/zero_tight/predict")
        tight = {"status": code, "seconds": round(late, 2), "body": body}
        for name in APPS:
            serve.delete(name)
    return {"rounds": rounds, "tight": tight, "machine": h.machine_info()}


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    h.add_keep_logs(parser)
    args = h.parse(parser, argv, worker)
    if args is None:
        return 0

    from graphs.cluster import RECOMMENDED_ENV

    spec = {"rounds": args.rounds}
    raw = h.run_worker(
        os.path.abspath(__file__),
        spec,
        dict(RECOMMENDED_ENV),
        tag="scale_to_zero",
        timeout_s=300 + 60 * args.rounds,
        keep_logs=args.keep_logs,
    )
    rounds, tight = raw["rounds"], raw["tight"]
    colds = sorted(r["cold_s"] for r in rounds)
    p50 = colds[len(colds) // 2]
    checks = [
        h.check("cold start p50 (s)", p50, COLD_START_TARGET_S, higher_is_better=False),
        h.check(
            "request at zero with a 1 s deadline: answered after (s)",
            tight["seconds"],
            1.5,
            higher_is_better=False,
        ),
    ]
    served = all(r["cold_status"] == 200 and r["warm_status"] == 200 for r in rounds)
    late_ok = tight["status"] == 504 and tight["body"].get("node") == "lazy"
    markdown = "\n".join(
        [
            "# Scale to zero: the cold start",
            "",
            f"{h.measured('scale_to_zero.py')} A one-node graph (python model `lazy`, 10 ms per "
            "request, `num_cpus: 0`) autoscaled by servegraph's policy with `min_replicas: 0` "
            "and a 2 s downscale cooldown. Each round waits until the node has no replica, "
            "then sends one request (cold: it waits at the ingress while Serve starts a "
            "replica) and one more (warm).",
            "",
            h.md_table(["check", "value", "target", "verdict"], [list(c.values()) for c in checks]),
            "",
            h.md_table(
                [
                    "round",
                    "idle to zero (s)",
                    "cold status",
                    "cold start (s)",
                    "warm status",
                    "warm (ms)",
                ],
                [list(r.values()) for r in rounds],
            ),
            "",
            f"Every request served: {served}. At zero, a graph with a 1 s deadline answered "
            f"{tight['status']} after {tight['seconds']} s: `{tight['body']}` (expected: 504 "
            f"naming `lazy`: {late_ok}).",
            "",
            f"Machine: {raw['machine']}",
        ]
    )
    h.emit(
        "scale_to_zero", markdown, {"spec": spec, **raw, "checks": checks}, checks, args.reports_dir
    )
    ok = all(c["verdict"] == "PASS" for c in checks) and served and late_ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
