"""Graph overhead: an N-hop pass-through graph against hand-written Ray Serve chains.

Two cluster configurations, each in its own process and its own private Ray cluster
(``graphs.cluster.start``, token auth; see ``_harness/cluster.py``):

(a) Ray Serve defaults: ``handwritten.chain(N)`` at ``/hw``.
(b) ``graphs.cluster.RECOMMENDED_ENV``: ``handwritten_grpc.chain(N)`` at ``/hwg``, the graph
    ``graphs.examples.passthrough.build_app({"hops": N, "fusion": "none"})`` (unfused: a
    deployment per hop) at ``/passthrough`` and the same graph with the default placement
    (``fusion: cheap``: every hop runs in the ingress) at ``/pf``, measured in alternating
    rounds (A B C, C B A, ...) and summarized by the median over rounds.

Every request carries ``{"inputs": {"x": [1.0]}}`` (the hand-written chains pass any JSON body
through). Targets: unfused graph/handwritten_grpc p50 <= 1.10 and rps >= 0.9 at each
concurrency; unfused graph (b) against handwritten on defaults (a): p50 and rps both at least 2x
better; fused graph p50 <= 0.25x handwritten on defaults and <= 0.5x handwritten_grpc.
``--variants`` also measures the unfused graph under each switch of RECOMMENDED_ENV on its own
and left out.

    python loadtests/bench_overhead.py [--seconds 8] [--rounds 3] [--hops 3] [--variants]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import _harness as h

BODY = {"inputs": {"x": [1.0]}}
TARGETS = {
    # name: (app name, route prefix, path posted to)
    "hw": ("hw", "/hw", "/hw"),
    "hwg": ("hwg", "/hwg", "/hwg"),
    "graph": ("passthrough", "/passthrough", "/passthrough/predict"),
    "fused": ("pf", "/pf", "/pf/predict"),
}
CHECK_COLUMNS = {
    "concurrency": "c",
    "ratio": "ratio",
    "value": "value",
    "target": "target",
    "verdict": "verdict",
}
LABELS = {
    "hw": "handwritten.py",
    "hwg": "handwritten_grpc.py",
    "graph": "graph (passthrough, fusion: none)",
    "fused": "graph (passthrough, fusion: cheap)",
}


# --- worker: one cluster configuration ---------------------------------------------------------


def deploy(target: str, hops: int) -> None:
    from ray import serve

    app_name, prefix, _ = TARGETS[target]
    if target == "hw":
        from yardsticks import handwritten

        app = handwritten.chain(hops)
    elif target == "hwg":
        from yardsticks import handwritten_grpc

        app = handwritten_grpc.chain(hops)
    else:
        from graphs.examples.passthrough import build_app

        # Unfused (a deployment per hop, as the hand-written chains have), or the default
        # placement: every hop runs in the ingress.
        app = build_app({"hops": hops, "fusion": "none" if target == "graph" else "cheap"})
    serve.run(app, name=app_name, route_prefix=prefix)


def check_answer(target: str, answer: Any, hops: int) -> None:
    """The response must be right, or the timings mean nothing."""
    if target in ("graph", "fused"):
        expected = [f"hop{i}" for i in range(hops)]
        if answer.get("outputs") != {"x": [1.0]} or answer.get("served_by") != expected:
            raise RuntimeError(f"unexpected graph answer: {answer}")
    elif answer != BODY:
        raise RuntimeError(f"unexpected {target} answer: {answer}")


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Deploy ``spec["targets"]`` in one fresh cluster; measure them in alternating rounds."""
    targets: list[str] = spec["targets"]
    hops, seconds, rounds = spec["hops"], spec["seconds"], spec["rounds"]
    concurrencies: list[int] = spec["concurrency"]
    out: dict[str, Any] = {}
    t_start = time.perf_counter()
    with h.ray_cluster(num_cpus=spec.get("num_cpus", 2)):
        out["cluster_start_s"] = time.perf_counter() - t_start
        urls = {}
        for t in targets:
            deploy(t, hops)
            urls[t] = h.BASE_URL + TARGETS[t][2]
            check_answer(t, h.wait_ready(urls[t], BODY), hops)
        h.warm_up(urls, BODY, concurrencies, spec["warmup"])
        out["targets"] = h.alternating_rounds(
            urls, BODY, concurrencies, rounds, seconds, tag="bench_overhead"
        )
        out["machine"] = h.machine_info()
    return out


# --- parent: configurations, ratios, report -----------------------------------------------------


def variant_switches() -> list[tuple[str, dict[str, str]]]:
    """Ray Serve defaults, each recommended switch alone, all but each one, all of them, and
    all of them with servegraph's handles on Ray's by-reference transport."""
    from graphs.cluster import RECOMMENDED_ENV

    keys = list(RECOMMENDED_ENV)
    off = {k: h.RAY_SERVE_DEFAULTS[k] for k in keys}
    variants = [("defaults (no switch)", dict(off))]
    for k in keys:
        variants.append((f"only {k}={RECOMMENDED_ENV[k]}", {**off, k: RECOMMENDED_ENV[k]}))
    for k in keys:
        variants.append((f"all but {k} (={off[k]})", {**RECOMMENDED_ENV, k: off[k]}))
    variants.append(("all recommended", dict(RECOMMENDED_ENV)))
    variants.append(
        (
            "all recommended + SERVEGRAPH_HANDLE_TRANSPORT=ray",
            {**RECOMMENDED_ENV, "SERVEGRAPH_HANDLE_TRANSPORT": "ray"},
        )
    )
    return variants


def run_config(
    args: argparse.Namespace,
    tag: str,
    targets: list[str],
    switches: dict[str, str],
    seconds: float,
    rounds: int,
) -> dict[str, Any]:
    spec = {
        "targets": targets,
        "hops": args.hops,
        "seconds": seconds,
        "rounds": rounds,
        "concurrency": args.concurrency,
        "warmup": args.warmup,
    }
    budget = 240 + rounds * len(targets) * len(args.concurrency) * (seconds + 3)
    raw = h.run_worker(
        os.path.abspath(__file__),
        spec,
        switches,
        tag=tag,
        timeout_s=budget,
        keep_logs=args.keep_logs,
    )
    raw["summary"] = h.summarize_targets(raw["targets"])
    raw["switches"] = switches
    return raw


def ratios(a: dict[str, Any], b: dict[str, Any], concurrencies: list[int]) -> list[dict[str, Any]]:
    """Every target ratio with its verdict."""
    rows = []
    for c in map(str, concurrencies):
        hw, hwg, g = a["summary"]["hw"][c], b["summary"]["hwg"][c], b["summary"]["graph"][c]
        fused = b["summary"]["fused"][c]
        checks = [
            ("p50 graph / handwritten_grpc", g["p50_ms"] / hwg["p50_ms"], 1.10, False),
            ("rps graph / handwritten_grpc", g["rps"] / hwg["rps"], 0.9, True),
            ("p50 hw(defaults) / graph(recommended)", hw["p50_ms"] / g["p50_ms"], 2.0, True),
            ("rps graph(recommended) / hw(defaults)", g["rps"] / hw["rps"], 2.0, True),
            ("p50 fused graph / hw(defaults)", fused["p50_ms"] / hw["p50_ms"], 0.25, False),
            ("p50 fused graph / handwritten_grpc", fused["p50_ms"] / hwg["p50_ms"], 0.5, False),
        ]
        rows += [h.check(*ck, concurrency=int(c)) for ck in checks]
    return rows


def render(
    args: argparse.Namespace,
    a: dict[str, Any],
    b: dict[str, Any],
    checks: list[dict[str, Any]],
    variants: list[dict[str, Any]],
) -> str:
    from graphs.cluster import RECOMMENDED_ENV

    lines = [
        "# Graph overhead: pass-through graph vs hand-written Ray Serve",
        "",
        h.measured("bench_overhead.py"),
        "",
        f"N = {args.hops} hops; {args.rounds} rounds of {args.seconds:g} s per target and "
        f"concurrency (closed loop, `loadgen.run`), targets alternating within each round; "
        "figures are medians over rounds. Each configuration ran in its own fresh process and "
        "private Ray cluster (`graphs.cluster.start(num_cpus=2)`, token auth, Serve on "
        "127.0.0.1:8100). The hand-written chains are `loadtests/yardsticks/`, vendored copies "
        "of the team's yardsticks.",
        "",
        "- (a) Ray Serve defaults ("
        + h.switches({k: h.RAY_SERVE_DEFAULTS[k] for k in RECOMMENDED_ENV})
        + "): `handwritten.chain(N)` at `/hw`.",
        "- (b) `graphs.cluster.RECOMMENDED_ENV` ("
        + h.switches(RECOMMENDED_ENV)
        + "): `handwritten_grpc.chain(N)` at `/hwg`, "
        "`graphs.examples.passthrough.build_app({'hops': N, 'fusion': 'none'})` at "
        "`/passthrough/predict` and the same graph with `'fusion': 'cheap'` (the default "
        "placement: every hop in the ingress) at `/pf/predict`.",
        "",
        "## Targets",
        "",
        h.rows_table(checks, CHECK_COLUMNS),
        "",
        "## Figures",
        "",
    ]
    rows = []
    for cfg, res in (("(a) defaults", a), ("(b) recommended", b)):
        for t, per_c in res["summary"].items():
            for c, s in per_c.items():
                rows.append([cfg, LABELS[t], c, *h.figure_cells(s, rps_range=True)])
    lines.append(h.md_table(["config", "target", "c", *h.figure_headers(rps_range=True)], rows))
    if variants:
        lines += [
            "",
            "## Variants: the graph under each switch",
            "",
            f"Graph only, {args.variant_rounds} rounds of {args.variant_seconds:g} s, one fresh "
            "cluster per row; rows come from different clusters, so compare with some care.",
            "",
        ]
        vrows = []
        for v in variants:
            graph = v["summary"]["graph"]
            row = [v["name"]]
            for c in map(str, args.concurrency):
                row += [graph[c]["p50_ms"], graph[c]["rps"]]
            row.append(max(graph[c]["cpu_cores_foreign"] for c in map(str, args.concurrency)))
            vrows.append(row)
        headers = ["configuration"]
        for c in args.concurrency:
            headers += [f"p50 ms c={c}", f"rps c={c}"]
        headers.append("other cores")
        lines.append(h.md_table(headers, vrows))
    lines += [
        "",
        "## Conditions",
        "",
        f"- (a): {json.dumps(a['machine'])}.",
        f"- (b): {json.dumps(b['machine'])}.",
        "- `other cores` is the CPU (in cores, of "
        f"{a['machine']['cpus']}) that processes outside the benchmark's own process tree used "
        "while it measured: other work sharing the machine. `raylets_running` > 1 means another "
        "Ray cluster was up. Ratios within configuration (b) are robust to such drift (targets "
        "interleaved); ratios across (a) and (b) compare two clusters measured a minute apart "
        "and are noisier.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    h.add_timing(parser, per="target", seconds=8.0, rounds=3, warmup=2.0)
    parser.add_argument("--hops", type=int, default=3, help="pass-through hops (N)")
    h.add_concurrencies(parser, [1, 16])
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also measure the graph under each RECOMMENDED_ENV switch on/off",
    )
    parser.add_argument("--variant-seconds", type=float, default=4.0)
    parser.add_argument("--variant-rounds", type=int, default=2)
    h.add_keep_logs(parser)
    args = h.parse(parser, argv, worker)
    if args is None:
        return 0

    from graphs.cluster import RECOMMENDED_ENV

    a = run_config(args, "a_defaults", ["hw"], {}, args.seconds, args.rounds)
    b = run_config(
        args,
        "b_recommended",
        ["hwg", "graph", "fused"],
        dict(RECOMMENDED_ENV),
        args.seconds,
        args.rounds,
    )
    variants = []
    if args.variants:
        for i, (name, switches) in enumerate(variant_switches()):
            res = run_config(
                args, f"v{i}", ["graph"], switches, args.variant_seconds, args.variant_rounds
            )
            res["name"] = name
            variants.append(res)
    checks = ratios(a, b, args.concurrency)
    result = {
        "benchmark": "bench_overhead",
        "hops": args.hops,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "checks": checks,
        "summary": {"a_defaults": a["summary"], "b_recommended": b["summary"]},
        "variants": [
            {"name": v["name"], "switches": v["switches"], "summary": v["summary"]}
            for v in variants
        ],
        "machine": {"a": a["machine"], "b": b["machine"]},
        "all_pass": all(c["verdict"] == "PASS" for c in checks),
    }
    markdown = render(args, a, b, checks, variants)
    data = {**result, "raw": {"a": a, "b": b}}
    if variants:  # kept apart too, so a later run without --variants does not replace it
        h.write_report("bench_overhead_variants", markdown, data, args.reports_dir)
    h.emit("bench_overhead", markdown, data, result, args.reports_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
