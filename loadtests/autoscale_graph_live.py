"""Graph-level autoscaling, shown live: a two-stage graph with a router under a step load.

One private local Ray cluster (``graphs.cluster.start``, token auth,
``graphs.cluster.RECOMMENDED_ENV``, Serve on 127.0.0.1:8100) serves one graph deployed from a
Serve config (``graphs.builder:build_app``, as ``serve deploy`` does) whose application names
the graph-level policy, ``autoscaling_policy: {policy_function:
autoscale.serve_policy:graph_policy}``: ingress -> ``prep`` (a cheap preprocess node,
deployment of its own) -> ``slow`` (a model that sleeps ``--slow-ms``) -> ``split`` (a router,
fused into the ingress) sending 80 % to ``a`` and 20 % to ``b`` (models that sleep
``--arm-ms``). Every node ``num_cpus: 0``.

``locust -f loadtests/locust_step.py --headless`` drives low -> high -> low closed-loop users
while the driver samples every node's replicas, target and requests every 0.5 s; the policy's
decisions and reasons come from Serve's controller log. Writes
``reports/autoscale_graph_live.md`` with a PNG (one panel per node, one for latency and
throughput) and the raw series to ``.json``, and checks that the bottleneck scales first, that
the node downstream of it is sized from the upstream rate before its own queue builds, and that
nothing upstream grows while a node downstream is saturated.

    python loadtests/autoscale_graph_live.py        # ~105 s of load, ~4 min in all

The parts live in ``_autoscale_graph/``: ``scenario`` (graph and Serve config), ``worker`` (the
live cluster), ``analysis``, ``plots`` and ``report``.
"""

from __future__ import annotations

import json
import os
import sys

import _harness as h
from _autoscale_graph.report import report
from _autoscale_graph.worker import worker


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    parser.add_argument("--low-users", type=int, default=2)
    parser.add_argument("--high-users", type=int, default=20)
    parser.add_argument("--low-s", type=float, default=20.0, help="seconds at the low load first")
    parser.add_argument("--high-s", type=float, default=45.0, help="seconds at the high load")
    parser.add_argument("--tail-s", type=float, default=40.0, help="seconds back at the low load")
    parser.add_argument("--slow-ms", type=float, default=100.0, help="the slow node's sleep")
    parser.add_argument("--arm-ms", type=float, default=50.0, help="sleep of the arms a and b")
    parser.add_argument("--slo-ms", type=float, default=400.0, help="the slow node's p95 SLO")
    parser.add_argument("--slow-max", type=int, default=6, help="max replicas of slow")
    parser.add_argument("--arm-max", type=int, default=3, help="max replicas of a and b each")
    h.add_keep_logs(parser)
    parser.add_argument("--from-raw", help="re-render the report from a kept worker result.json")
    args = h.parse(parser, argv, worker)
    if args is None:
        return 0

    from graphs.cluster import RECOMMENDED_ENV

    spec = {
        k: getattr(args, k)
        for k in (
            "low_users",
            "high_users",
            "low_s",
            "high_s",
            "tail_s",
            "slow_ms",
            "arm_ms",
            "slo_ms",
            "slow_max",
            "arm_max",
        )
    }
    if args.from_raw:
        raw = h.read_raw(args.from_raw)
        spec = raw.get("spec", spec)
    else:
        raw = h.run_worker(
            os.path.abspath(__file__),
            spec,
            dict(RECOMMENDED_ENV),
            tag="autoscale_graph_live",
            timeout_s=240 + spec["low_s"] + spec["high_s"] + spec["tail_s"],
            keep_logs=args.keep_logs,
        )
        raw["spec"] = spec
    name = "autoscale_graph_live"
    os.makedirs(args.reports_dir, exist_ok=True)
    raw_path = os.path.join(args.reports_dir, f"{name}.raw.json")
    with open(raw_path, "w", encoding="utf-8") as f:
        json.dump(raw, f)
    markdown, data = report(raw, spec, name, args.reports_dir)
    path = h.write_report(name, markdown, data, args.reports_dir)
    os.remove(raw_path)
    print(markdown)
    if raw["run"]["exit_code"] != 0:
        print(
            f"locust exit {raw['run']['exit_code']}:\n{raw['run']['output_tail']}", file=sys.stderr
        )
    print(f"\nreport: {path}", file=sys.stderr)
    return 0 if all(c["pass"] for c in data["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
