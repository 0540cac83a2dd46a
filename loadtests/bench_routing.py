"""Routing overhead: a router hop, a 100 %-mirrored slow shadow and a bandit, against one node.

One cluster (``graphs.cluster.RECOMMENDED_ENV``, private Ray cluster) serves four graphs built
with the Python DSL, every deployment ``num_cpus: 0.1``, input ``x`` (FP32, [-1]):

- ``direct`` (``/rt_direct``): entry = python model ``primary`` (``passthrough:Identity``);
- ``router`` (``/rt_router``): entry = weighted router ``split`` with the one arm ``primary``;
- ``shadow`` (``/rt_shadow``): as ``router``, plus ``shadow: {target: slow, fraction: 1.0,
  max_in_flight: 16, timeout_s: 5}``, ``slow`` a python model sleeping 0.5 s per call;
- ``bandit`` (``/rt_bandit``): router over two pass-through arms, ``bandit: thompson_beta``.

Measured in alternating rounds (A B C D, D C B A, ...), medians over rounds. Target: p50
shadow/router <= 1.05 at each concurrency; router/direct and bandit/router are reported. The
shadow's figures from ``GET /rt_shadow/experiments`` prove it ran (mirrored and compared > 0).

    python loadtests/bench_routing.py [--seconds 8] [--rounds 3] [--concurrency 1 8]
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
TARGETS = ("direct", "router", "shadow", "bandit")
APP = {t: f"rt_{t}" for t in TARGETS}  # app name, graph name and route prefix /rt_<target>
ROUTED = [["split", "primary"]]
SERVED_BY = {
    "direct": [["primary"]],
    "router": ROUTED,
    "shadow": ROUTED,
    "bandit": [["split", "a"], ["split", "b"]],
}
NUM_CPUS = 0.1
SHADOW = {"fraction": 1.0, "max_in_flight": 16, "timeout_s": 5.0}  # 16: the default
SLOW_S = 0.5
IDENTITY = "graphs.examples.passthrough:Identity"
CHECK_COLUMNS = {
    "concurrency": "c",
    "ratio": "ratio",
    "value": "value",
    "rps_ratio": "rps ratio",
    "target": "target",
    "verdict": "verdict",
}
SHADOW_KEYS = ("mirrored", "dropped", "timeouts", "compared", "shadow_errors", "mean_abs_diff")


# --- worker: the cluster ------------------------------------------------------------------------


def build(target: str) -> Any:
    """The Serve application of one target."""
    from graphs.dsl import Graph, tensor

    x = [tensor("x", "FP32", [-1])]
    g = Graph(APP[target], inputs=x, outputs=x, ingress={"num_cpus": NUM_CPUS})

    def model(name: str, cls: str = IDENTITY, **kw: Any) -> Any:
        return g.model(name, runtime="python", model_class=cls, num_cpus=NUM_CPUS, **kw)

    if target == "direct":
        g.entry = model("primary")
    elif target == "bandit":
        arms = [model("a"), model("b")]
        g.entry = g.router("split", arms, bandit={"algorithm": "thompson_beta"}, num_cpus=NUM_CPUS)
    else:
        extra: dict[str, Any] = {}
        if target == "shadow":
            slow = model(
                "slow", "graphs.examples.passthrough:Sleep", init_kwargs={"seconds": SLOW_S}
            )
            extra["shadow"] = {"target": slow, **SHADOW}
        g.entry = g.router("split", {model("primary"): 1.0}, num_cpus=NUM_CPUS, **extra)
    return g.build()


def check_answers(target: str, url: str, n: int = 8) -> None:
    """The answers must be right (input back, through the expected nodes), or timings mean
    nothing; router answers must carry a feedback token."""
    import httpx

    for _ in range(n):
        answer = httpx.post(url, json=BODY, timeout=30).json()
        ok = (
            answer.get("outputs") == BODY["inputs"] and answer.get("served_by") in SERVED_BY[target]
        )
        if not ok or (target != "direct") != bool(answer.get("feedback_token")):
            raise RuntimeError(f"unexpected {target} answer: {answer}")


def shadow_figures() -> dict[str, Any]:
    import httpx

    report = httpx.get(f"{h.BASE_URL}/{APP['shadow']}/experiments", timeout=30).json()
    shadow = report["routers"]["split"]["shadow"]
    return {k: shadow.get(k) for k in SHADOW_KEYS}


def settle_shadow() -> dict[str, Any]:
    """Wait out the shadow's backlog (each mirrored call ends within ``timeout_s``), so none
    runs during another graph's measurement; then the shadow's figures."""
    time.sleep(SHADOW["timeout_s"] + 1)
    return shadow_figures()


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Deploy the four graphs in one fresh cluster; measure them in alternating rounds."""
    from ray import serve

    from routing.state import STATE_DIR_ENV

    # Private router state: a snapshot from an earlier run would carry its shadow counts over.
    os.environ[STATE_DIR_ENV] = os.path.join(h.private_dir(), "state")
    seconds, rounds, concurrencies = spec["seconds"], spec["rounds"], spec["concurrency"]
    out: dict[str, Any] = {}
    with h.ray_cluster(num_cpus=2):
        urls = {}
        for t in TARGETS:
            serve.run(build(t), name=APP[t], route_prefix=f"/{APP[t]}")
            urls[t] = f"{h.BASE_URL}/{APP[t]}/predict"
            h.wait_ready(urls[t], BODY)
            check_answers(t, urls[t])
        # Warm-up: connections, handle routers, router state sync.
        h.warm_up(urls, BODY, concurrencies, spec["warmup"])
        settle_shadow()

        def after(target: str, res: dict[str, Any]) -> None:
            if target == "shadow":
                res["shadow_after"] = settle_shadow()

        out["targets"] = h.alternating_rounds(
            urls, BODY, concurrencies, rounds, seconds, tag="bench_routing", after=after
        )
        out["shadow"] = shadow_figures()
        out["machine"] = h.machine_info()
    return out


# --- parent: ratios and report ------------------------------------------------------------------


def ratios(summary: dict[str, Any], concurrencies: list[int]) -> list[dict[str, Any]]:
    """p50 ratios per concurrency; only shadow/router has a target."""
    rows = []
    for c in map(str, concurrencies):
        s = {t: summary[t][c] for t in TARGETS}
        for name, num, den, target in (
            ("p50 router / direct", "router", "direct", None),
            ("p50 shadow / router", "shadow", "router", 1.05),
            ("p50 bandit / router", "bandit", "router", None),
        ):
            value = s[num]["p50_ms"] / s[den]["p50_ms"]
            rps_ratio = round(s[num]["rps"] / s[den]["rps"], 3)
            rows.append(
                h.check(name, value, target, False, concurrency=int(c), rps_ratio=rps_ratio)
            )
    return rows


def render(args: argparse.Namespace, raw: dict[str, Any], checks: list[dict[str, Any]]) -> str:
    from graphs.cluster import RECOMMENDED_ENV

    shadow = raw["shadow"]
    lines = [
        "# Routing overhead: router hop, mirrored shadow, bandit",
        "",
        h.measured("bench_routing.py"),
        "",
        f"{args.rounds} rounds of {args.seconds:g} s per graph and concurrency (closed loop, "
        "`loadgen.run`), graphs alternating within each round (A B C D, D C B A, ...); figures "
        "are medians over rounds. One fresh process and private Ray cluster "
        "(`graphs.cluster.start(num_cpus=2)`, token auth, Serve on 127.0.0.1:8100) with "
        f"`RECOMMENDED_ENV` ({h.switches(RECOMMENDED_ENV)}). Every deployment "
        f"`num_cpus: {NUM_CPUS}`; python model nodes, body `{BODY}`.",
        "",
        "- `direct` (`/rt_direct`): entry = model `primary` (`passthrough:Identity`).",
        "- `router` (`/rt_router`): entry = weighted router `split`, one arm `primary`.",
        f"- `shadow` (`/rt_shadow`): as `router`, plus `shadow: {SHADOW}` to `slow` "
        f"(`passthrough:Sleep`, {SLOW_S:g} s per call). After each shadow measurement the script "
        "waits out the shadow's backlog (`timeout_s` + 1 s) before the next graph's.",
        "- `bandit` (`/rt_bandit`): router over two pass-through arms, "
        "`bandit: {algorithm: thompson_beta}` (no rewards posted).",
        "",
        "## Targets",
        "",
        h.rows_table(checks, CHECK_COLUMNS),
        "",
        "## Figures",
        "",
    ]
    rows = []
    for t, per_c in raw["summary"].items():
        for c, s in per_c.items():
            rows.append([t, c, *h.figure_cells(s)])
    lines += [
        h.md_table(["graph", "c", *h.figure_headers()], rows),
        "",
        "## Shadow (`GET /rt_shadow/experiments` after the last round)",
        "",
        h.md_table(list(SHADOW_KEYS), [[shadow[k] for k in SHADOW_KEYS]]),
        "",
        "`dropped`: over `max_in_flight`; `shadow_errors`: failures; `timeouts`: calls abandoned "
        "at `timeout_s`. Warm-up and answer checks are mirrored as well.",
        "",
        "## Conditions",
        "",
        f"- {json.dumps(raw['machine'])}.",
        "- `other cores`: CPU (cores, of "
        f"{raw['machine']['cpus']}) used by processes outside the benchmark's process tree while "
        "it measured. Ratios of graphs interleaved in one cluster hold up better than absolutes.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    h.add_timing(parser, per="graph", seconds=8.0, rounds=3, warmup=2.0)
    h.add_concurrencies(parser, [1, 8])
    h.add_keep_logs(parser)
    args = h.parse(parser, argv, worker)
    if args is None:
        return 0

    from graphs.cluster import RECOMMENDED_ENV

    spec = {k: getattr(args, k) for k in ("seconds", "rounds", "warmup", "concurrency")}
    n = args.rounds * len(args.concurrency)
    budget = 300 + n * (len(TARGETS) * (args.seconds + 3) + SHADOW["timeout_s"] + 5)
    raw = h.run_worker(
        os.path.abspath(__file__),
        spec,
        dict(RECOMMENDED_ENV),
        tag="routing",
        timeout_s=budget,
        keep_logs=args.keep_logs,
    )
    shadow = raw["shadow"]
    if not (shadow["mirrored"] or 0) > 0 or not (shadow["compared"] or 0) > 0:
        raise RuntimeError(f"invalid run: the shadow did not run (figures: {shadow})")
    raw["summary"] = h.summarize_targets(raw["targets"])
    checks = ratios(raw["summary"], args.concurrency)
    result = {
        "benchmark": "bench_routing",
        "seconds": args.seconds,
        "rounds": args.rounds,
        "checks": checks,
        "summary": raw["summary"],
        "shadow": shadow,
        "machine": raw["machine"],
        "all_pass": all(c["verdict"] != "FAIL" for c in checks),
    }
    markdown = render(args, raw, checks)
    h.emit("bench_routing", markdown, {**result, "raw": raw}, result, args.reports_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
