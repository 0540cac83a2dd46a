"""Chaos tests: faults injected under steady load, what clients saw (issue #11).

Scenarios (``--scenarios``, default all):

1. one replica of each node kind SIGKILLed (2 replicas each): 0 failed requests;
2. one of 2 ingress replicas SIGKILLed: failed <= 0.1 %, none after T+5 s;
3. the router's state actor SIGKILLed during a bandit run: 0 failed, nothing learned lost;
4. a two-node cluster on this machine, the worker node's raylet SIGKILLed while it holds half
   the model replicas, then a worker started again: 0 failed, replicas back on the worker;
5. a model that hangs: 504 at the deadline, breaker opens, fallback serves, healthy p95 <= 1.2x;
6. the router's state folder full, then read-only, mid-run: serving continues, the failure is
   visible, state catches up;
7. the snapshot truncated between restarts of the state actor: it starts, recovers, says what
   it lost.

Each scenario reports requests sent, failed (by kind), the longest error window, failures
after T+5 s, its target and verdict, and what it observed. Scenarios 1-3 and 5-7 share one
private cluster (``_harness``), scenario 4 gets a two-node one.

    python loadtests/chaos.py [--scenarios 1,2,3] [--seconds 25] [--concurrency 8]
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import _harness as h
from _chaos.report import render
from _chaos.worker import SCENARIOS, TWO_NODE, worker


def run_group(args: Any, numbers: list[int], tag: str) -> dict[str, Any]:
    """One worker (fresh cluster) for ``numbers``; every scenario ERROR if the worker fails."""
    from graphs.cluster import RECOMMENDED_ENV

    spec = {"scenarios": numbers, "seconds": args.seconds, "concurrency": args.concurrency}
    budget = 120 + len(numbers) * (3 * args.seconds + 150)
    try:
        return h.run_worker(
            os.path.abspath(__file__),
            spec,
            dict(RECOMMENDED_ENV),
            tag=tag,
            timeout_s=budget,
            keep_logs=args.keep_logs,
        )
    except RuntimeError as exc:
        failed = {"verdict": "ERROR", "error": str(exc)}
        return {"scenarios": {str(n): {"title": SCENARIOS[n][0], **failed} for n in numbers}}


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    parser.add_argument(
        "--scenarios",
        default=",".join(map(str, SCENARIOS)),
        help="scenario numbers, comma-separated (default all: 1,2,3,4,5,6,7)",
    )
    parser.add_argument("--seconds", type=float, default=25.0, help="seconds of load per run (25)")
    h.add_concurrency(parser, 8)
    h.add_keep_logs(parser)
    parser.add_argument(
        "--from-raw", help="render the report again from a chaos.json this script wrote"
    )
    args = h.parse(parser, argv, worker)
    if args is None:
        return 0
    if args.from_raw:
        with open(args.from_raw, encoding="utf-8") as f:
            saved = json.load(f)
        args.seconds, args.concurrency = saved["seconds"], saved["concurrency"]
        summary = {k: v for k, v in saved.items() if k != "raw"}
        markdown = render(args, saved["raw"])
        h.emit("chaos", markdown, saved, summary, args.reports_dir)
        return 0
    try:
        numbers = sorted({int(x) for x in args.scenarios.split(",") if x.strip()})
    except ValueError:
        parser.error(f"--scenarios: numbers 1-7 expected, got {args.scenarios!r}")
    unknown = [n for n in numbers if n not in SCENARIOS]
    if unknown:
        parser.error(f"--scenarios: no scenario {unknown}; scenarios are 1-7")

    measured = h.measured("chaos.py")
    raw: dict[str, Any] = {"scenarios": {}}
    shared = [n for n in numbers if n not in TWO_NODE]
    if shared:
        raw = run_group(args, shared, "chaos")
    for n in (n for n in numbers if n in TWO_NODE):
        two = run_group(args, [n], f"chaos-{n}")
        raw["scenarios"].update(two["scenarios"])
        raw.setdefault("product", two.get("product"))
        raw.setdefault("machine_two_node", two.get("machine"))
    raw["scenarios"] = {str(n): raw["scenarios"][str(n)] for n in numbers}
    raw["measured"] = measured
    verdicts = {n: r.get("verdict") for n, r in raw["scenarios"].items()}
    summary = {
        "benchmark": "chaos",
        "verdicts": verdicts,
        "seconds": args.seconds,
        "concurrency": args.concurrency,
    }
    h.emit("chaos", render(args, raw), {**summary, "raw": raw}, summary, args.reports_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
