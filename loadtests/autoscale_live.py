"""Live autoscaling under a step load: servegraph's policy against Ray Serve's default, as
shipped and tuned.

One private local Ray cluster (``graphs.cluster.start``, token auth,
``graphs.cluster.RECOMMENDED_ENV``, Serve on 127.0.0.1:8100) runs, one after the other, three
fresh deployments of the same one-node graph: a python-runtime model node that sleeps
``--service-ms`` per request (no CPU, ``num_cpus: 0``, ``max_ongoing_requests: 2``) behind the
ingress. Run ``ours`` scales the node with servegraph's policy (``autoscaling:`` in the graph,
``OURS``); run ``ray_default`` with Ray Serve's default policy (``autoscaling_config:``
``RAY_DEFAULT``: 30 s upscale delay, 600 s downscale delay); run ``ray_tuned`` with the same
policy as a careful user tunes it (``RAY_TUNED``: metrics every 0.5 s over 2 s, 3 s upscale
delay, downscale delay matched to ours).

Each run drives ``locust -f loadtests/locust_step.py --headless`` (low -> high -> low users,
bounded) at ``/<app>/predict`` while the driver samples the node's replicas every 0.5 s
(``serve.status()`` replica states, and the target from the controller's instance details,
what Serve's REST API serves). Writes ``reports/autoscale_live.md`` (``--quick``:
``autoscale_live_quick.md``) with PNG plots of latency, throughput and replicas over time, and
the raw series to the matching ``.json``.

    python loadtests/autoscale_live.py            # ~105 s of load per run, ~9 min in all
    python loadtests/autoscale_live.py --quick    # ~50 s per run

The parts live in ``_autoscale_live/``: ``scenario`` (graph and policies), ``worker`` (the live
cluster), ``analysis``, ``plots`` and ``report``.
"""

from __future__ import annotations

import os
import sys

import _harness as h
from _autoscale_live.report import report
from _autoscale_live.scenario import POLICIES
from _autoscale_live.worker import worker


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="10 s low, 20 s high, 20 s tail")
    parser.add_argument("--low-users", type=int, default=int(os.environ.get("STEP_LOW_USERS", 2)))
    parser.add_argument(
        "--high-users", type=int, default=int(os.environ.get("STEP_HIGH_USERS", 24))
    )
    parser.add_argument("--low-s", type=float, help="seconds at the low load first [20; quick 10]")
    parser.add_argument("--high-s", type=float, help="seconds at the high load [45; quick 20]")
    parser.add_argument("--tail-s", type=float, help="seconds back at the low load [40; quick 20]")
    parser.add_argument("--service-ms", type=float, default=100.0)
    parser.add_argument("--max-ongoing", type=int, default=2)
    parser.add_argument("--slo-ms", type=float, default=400.0)
    parser.add_argument("--policies", default=",".join(POLICIES), help="order of the runs")
    h.add_keep_logs(parser)
    parser.add_argument(
        "--from-raw",
        help="re-render the report from a kept worker result.json (with the same duration flags)",
    )
    args = h.parse(parser, argv, worker)
    if args is None:
        return 0

    from graphs.cluster import RECOMMENDED_ENV

    defaults = (10.0, 20.0, 20.0) if args.quick else (20.0, 45.0, 40.0)
    env_s = [os.environ.get(k) for k in ("STEP_LOW_S", "STEP_HIGH_S", "STEP_TAIL_S")]
    low_s, high_s, tail_s = (
        v if v is not None else (float(e) if e else d)
        for v, e, d in zip((args.low_s, args.high_s, args.tail_s), env_s, defaults, strict=True)
    )
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = set(policies) - set(POLICIES)
    if unknown:
        parser.error(f"unknown policies {sorted(unknown)}; choose from {POLICIES}")
    spec = {
        "quick": args.quick,
        "low_users": args.low_users,
        "high_users": args.high_users,
        "low_s": low_s,
        "high_s": high_s,
        "tail_s": tail_s,
        "service_ms": args.service_ms,
        "max_ongoing": args.max_ongoing,
        "slo_ms": args.slo_ms,
        "policies": policies,
    }
    per_run = low_s + high_s + tail_s
    if args.from_raw:
        raw = h.read_raw(args.from_raw)
    else:
        raw = h.run_worker(
            os.path.abspath(__file__),
            spec,
            dict(RECOMMENDED_ENV),
            tag="autoscale_live",
            timeout_s=240 + len(policies) * (per_run + 150),
            keep_logs=args.keep_logs,
        )
    name = "autoscale_live_quick" if args.quick else "autoscale_live"
    os.makedirs(args.reports_dir, exist_ok=True)
    markdown, data = report(raw, spec, name, args.reports_dir)
    path = h.write_report(name, markdown, data, args.reports_dir)
    print(markdown)
    for run in raw["runs"]:
        if run["exit_code"] != 0:
            print(
                f"[{run['policy']}] locust exit {run['exit_code']}:\n{run['output_tail']}",
                file=sys.stderr,
            )
    print(f"\nreport: {path}", file=sys.stderr)
    return 0 if all(c["pass"] for c in data["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
