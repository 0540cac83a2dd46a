"""bench_fusion.py's report: targets per cluster, the results table, figures, placement."""

from __future__ import annotations

import argparse
import json
from typing import Any

import _harness as h

from .configs import CONFIGS, NUM_CPUS, PEER, PEER_LABEL

CHECK_COLUMNS = {"cluster": "cluster", "concurrency": "c"} | {
    k: k for k in ("ratio", "value", "target", "verdict")
}


def ratios(run: dict[str, Any], lat: str, tp: str) -> list[dict[str, Any]]:
    """The targets of one cluster (ray-defaults rows count toward no verdict of the run)."""
    s, rows, tag = run["summary"], [], run["name"]

    def row(name: str, value: float, target: float | None, higher: bool, c: str) -> None:
        rows.append(h.check(name, value, target, higher, cluster=tag, concurrency=int(c)))

    if "all" in s:
        fused, peer = s["all"]["all"], s["all"][PEER]
        row("p50 fusion all / peer", fused[lat]["p50_ms"] / peer[lat]["p50_ms"], 2.0, False, lat)
        row("rps fusion all / peer", fused[tp]["rps"] / peer[tp]["rps"], 0.8, True, tp)
        if "peer_alone" in run:
            alone = run["peer_alone"]
            for name, key, c in (("p50", "p50_ms", lat), ("rps", "rps", tp)):
                value = fused[c][key] / alone[c][key]
                row(f"{name} fusion all / peer alone (no cluster up)", value, None, True, c)
    if "none" in s and "cheap" in s:
        cheap, none = s["cheap"], s["none"]
        value = cheap["cheap"][lat]["p50_ms"] / none["none"][lat]["p50_ms"]
        row("p50 default (cheap) / unfused (none)", value, 0.5, False, lat)
        per_peer = value * none[PEER][lat]["p50_ms"] / cheap[PEER][lat]["p50_ms"]
        row("the same, each over its interleaved peer", per_peer, None, False, lat)
    return rows


def table(run: dict[str, Any], lat: str, tp: str) -> list[list[Any]]:
    """configuration, p50 at c=lat, rps at c=tp, and both as ratios of the interleaved peer."""
    n, peer = run["name"], run["peer"]
    rows = [[n, PEER_LABEL, peer[lat]["p50_ms"], peer[tp]["rps"], 1.0, 1.0]]
    if "peer_alone" in run:
        alone = run["peer_alone"]
        rows.append([n, f"{PEER_LABEL}, alone", alone[lat]["p50_ms"], alone[tp]["rps"], "-", "-"])
    for t, blk in run["summary"].items():
        g, p = blk[t], blk[PEER]
        vs_peer = [g[lat]["p50_ms"] / p[lat]["p50_ms"], g[tp]["rps"] / p[tp]["rps"]]
        rows.append([n, CONFIGS[t][2], g[lat]["p50_ms"], g[tp]["rps"], *vs_peer])
    return rows


def render(
    args: argparse.Namespace, runs: list[dict[str, Any]], checks: list[dict[str, Any]]
) -> str:
    from graphs.cluster import RECOMMENDED_ENV, REPLICA_ENV_KEYS

    lat, tp = min(args.concurrency), max(args.concurrency)
    rows = [r for run in runs for r in table(run, str(lat), str(tp))]
    headers = ["cluster", "configuration", f"p50 ms c={lat}", f"rps c={tp}"]
    headers += ["p50 / peer", "rps / peer"]
    lines = [
        "# Node fusion: the digits graph against a plain FastAPI service",
        "",
        h.measured("bench_fusion.py"),
        "",
        f"{args.rounds} rounds of {args.seconds:g} s per target and concurrency (closed loop, "
        "`loadgen.run`), the peer and one graph alternating within each round; figures are "
        "medians over rounds. One fresh process and private Ray cluster per cluster "
        f"configuration (`graphs.cluster.start(num_cpus={NUM_CPUS})`, token auth, Serve on "
        "127.0.0.1:8100); the graph configurations deployed one after the other "
        "(`serve.run(graphs.builder.build_app(args))`, each deleted before the next), the peer "
        "running throughout, and alone before the cluster started. Body: one held-out digit.",
        "",
        "- (a) `loadtests/peer_fastapi.py`: FastAPI in one uvicorn process, ONNX Runtime and "
        "TorchScript with one intra-op thread each, no batching.",
        "- (b), (c): `graphs/examples/digits.yaml` with `configs/digits.yaml`'s deployments; "
        "(d): with `configs/digits-fused.yaml`'s (args in the JSON report).",
        f"- cluster `recommended`: {h.switches(RECOMMENDED_ENV)} (`python -m graphs.cluster "
        "start`); `ray_defaults` (`--ray-defaults`): "
        + h.switches({k: h.RAY_SERVE_DEFAULTS[k] for k in RECOMMENDED_ENV})
        + ", as a cluster started with plain `ray start` has them, the graphs built where "
        "the replica switches are unset (as plain `serve run` builds them), so that every "
        "deployment gets "
        + h.switches({k: RECOMMENDED_ENV[k] for k in REPLICA_ENV_KEYS})
        + " in its `runtime_env` from servegraph's compiler (the shipped configs state them in "
        "the application's `runtime_env` too); `ray_defaults_bare`: the same cluster, the "
        "graphs built with Ray's values stated, so nothing is added (servegraph before it "
        "added them).",
        "",
        "## Targets",
        "",
        h.rows_table(checks, CHECK_COLUMNS),
        "",
        "`all_pass` covers the `recommended` cluster; `ray_defaults` rows are for comparison.",
        "",
        "## Results",
        "",
        h.md_table(headers, rows),
        "",
        "A graph's ratios are against the peer measured in the same rounds; the peer's row is "
        "the median over all its rounds in that cluster.",
        "",
        "## Figures",
        "",
    ]
    frows = []
    for run in runs:
        blocks = [("peer alone", run["peer_alone"])] if "peer_alone" in run else []
        blocks += [(f"{t}: {w}", s[w]) for t, s in run["summary"].items() for w in (PEER, t)]
        for name, per_c in blocks:
            frows += [[run["name"], name, c, *h.figure_cells(x)] for c, x in per_c.items()]
    lines += [h.md_table(["cluster", "block: target", "c", *h.figure_headers()], frows), ""]
    lines += ["## Placement", ""]
    prows = []
    for run in runs:
        for t, info in run["graphs"].items():
            fused = ", ".join(sorted(n for n, d in info["nodes"].items() if d != n)) or "-"
            reps = ", ".join(f"{d} x{n}" for d, n in info["replicas"].items())
            prows.append([run["name"], CONFIGS[t][2], reps, fused, info["deploy_s"]])
    headers = ["cluster", "configuration", "deployments (running replicas)", "fused", "deploy s"]
    lines += [h.md_table(headers, prows), "", "## Conditions", ""]
    lines += [f"- {run['name']}: {json.dumps(run['machine'])}." for run in runs]
    lines.append(
        "- `other cores`: CPU (cores, of "
        f"{runs[0]['machine']['cpus']}) used by processes outside the benchmark's process tree "
        "(the cluster and the peer are in it) while it measured. Ratios of targets interleaved "
        "in one cluster hold up better than absolutes or ratios across blocks."
    )
    return "\n".join(lines)
