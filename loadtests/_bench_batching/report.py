"""The report: summaries per app, the batching checks, the notes that read them, markdown."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

import _harness as h

from .worker import UNBATCHED_LIMIT


def batch_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    sizes: Counter[int] = Counter()
    for r in rounds:
        sizes.update({int(k): v for k, v in r.get("batching", {}).get("sizes", {}).items()})
    batches = sum(sizes.values())
    requests = sum(k * v for k, v in sizes.items())
    common = ", ".join(f"{k}x{v}" for k, v in sizes.most_common(4))
    return {
        "batches": batches,
        "mean_batch": round(requests / batches, 2) if batches else None,
        "max_batch": max(sizes, default=None),
        "most_common": common,
    }


def analyse(
    args: argparse.Namespace, raw: dict[str, Any], timing: dict[str, Any]
) -> dict[str, Any]:
    """Summaries of the worker's rounds, the checks and the notes that read them."""
    http = {
        a: {
            **h.summarize(rs),
            "batches": batch_summary(rs) if a != "http_ceiling" else None,
            "callers": rs[0]["callers"],
        }
        for a, rs in raw["http"].items()
    }
    handle = {
        a: {**h.summarize(rs), "batches": batch_summary(rs), "callers": rs[0]["callers"]}
        for a, rs in raw["handle"].items()
    }
    c, lim = args.concurrency, UNBATCHED_LIMIT
    unb, unb_lim = http["mlp_unbatched"]["rps"], http[f"mlp_unbatched@c{lim}"]["rps"]
    best_unb = max(unb, unb_lim)

    def check(name: str, value: float, target: str) -> dict[str, Any]:
        return {
            "ratio": name,
            "value": round(value, 2),
            "target": target,
            "verdict": h.verdict(value, 2.5, True),
        }

    bat = http["mlp_batched"]["rps"]
    checks = [
        check(f"HTTP rps batched / unbatched, both at c={c}", bat / unb, ">= 2.5"),
        check(
            f"HTTP rps batched (c={c}) / unbatched at its best (c={c} or c={lim})",
            bat / best_unb,
            ">= 2.5 (info)",
        ),
    ]
    if "mlp_batched_wide" in http:
        checks.append(
            check(
                f"HTTP rps batched with ingress max_ongoing_requests=64 (c={c}) / unbatched "
                "at its best",
                http["mlp_batched_wide"]["rps"] / best_unb,
                ">= 2.5 (info)",
            )
        )
    if handle:
        h_unb = max(handle["mlp_unbatched"]["rps"], handle[f"mlp_unbatched@c{lim}"]["rps"])
        checks.append(
            check(
                f"handle rps batched (c={c}) / unbatched at its best (c={c} or c={lim})",
                handle["mlp_batched"]["rps"] / h_unb,
                ">= 2.5 (info)",
            )
        )
    gain = timing[str(args.max_batch_size)]["rows_per_s"] / timing["1"]["rows_per_s"]
    notes = [
        f"Bare model: {timing['1']['rows_per_s']:.0f} rows/s at batch 1, "
        f"{timing[str(args.max_batch_size)]['rows_per_s']:.0f} at batch {args.max_batch_size}: "
        f"batching could buy up to {gain:.1f}x on this model."
    ]
    if unb_lim > 1.3 * unb:
        notes.append(
            f"The unbatched app carries {unb:.0f} rps at c={c} but {unb_lim:.0f} rps at "
            f"c={lim}: with more requests than its model node takes at once (Ray's default "
            f"max_ongoing_requests, {lim}), the callers' routers back off (25 ms doubling to "
            "0.5 s) while the replica is full, and the replica idles. The c="
            f"{c} ratio ({bat / unb:.2f}x) therefore overstates what batching buys; against "
            f"the unbatched node at its best it is {bat / best_unb:.2f}x."
        )
    for label, table in (("HTTP", http), ("handle", handle)):
        b = (table.get("mlp_batched") or {}).get("batches")
        if b and b["mean_batch"]:
            notes.append(
                f"Batches formed ({label}, c={c}): mean {b['mean_batch']}, largest "
                f"{b['max_batch']} of max_batch_size {args.max_batch_size}"
                + (
                    f" - small although up to {c} requests wait in or in front of the node "
                    "(`loadtests/repro_batch_formation.py` shows, without Ray, how the batcher "
                    "forms batches when arrivals are spread out)."
                    if b["mean_batch"] < args.max_batch_size / 4
                    else "."
                )
            )
    if "http_ceiling" in http:
        ceil = http["http_ceiling"]["rps"]
        best = max(http[a]["rps"] for a in http if a.startswith("mlp_batched"))
        capped = best >= 0.8 * ceil
        notes.append(
            f"HTTP ceiling (same request, no model): {ceil:.0f} rps; the best batched app "
            f"reached {best / ceil:.0%} of it"
            + (
                ", so the HTTP path, not the model, caps batched throughput: the ratio is a "
                "lower bound of what batching buys (see the handle-level figures)."
                if capped
                else ", so the HTTP path does not cap the batched figures here."
            )
        )
    return {
        "model_gain": gain,
        "checks": checks,
        "summary": {"http": http, "handle": handle},
        "notes": notes,
    }


def render(args: argparse.Namespace, res: dict[str, Any]) -> str:
    from graphs.cluster import RECOMMENDED_ENV

    http, handle, checks = res["summary"]["http"], res["summary"]["handle"], res["checks"]
    lines = [
        "# Dynamic batching: ONNX model node, batching on vs off",
        "",
        h.measured("bench_batching.py"),
        "",
        f"Model: MLP {' → '.join(map(str, res['model']['dims']))} (MatMul+Add+Relu, float32, "
        f"{res['model']['params'] / 1e6:.1f} M parameters, {res['model']['mb']} MB), "
        f"`num_cpus: {args.model_cpus}` (so {args.model_cpus} ONNX Runtime intra-op thread), "
        f"ingress `num_cpus: 0`. Batching: `max_batch_size: {args.max_batch_size}, "
        f"max_wait_ms: {args.max_wait_ms:g}`. Cluster: `graphs.cluster.start(num_cpus=4)` "
        f"(logical; token auth) on {res['machine']['cpus']} cores, with "
        + h.switches(RECOMMENDED_ENV)
        + f". Load: c={args.concurrency}, {args.rounds} rounds of {args.seconds:g} s per "
        "app, apps alternating; medians over rounds.",
        "",
        "Bare ONNX Runtime, same thread count, no Serve: "
        + "; ".join(
            f"batch {bs}: {v['ms_per_call']:.2f} ms/call = {v['rows_per_s']:.0f} rows/s"
            for bs, v in res["model_timing"].items()
        )
        + f" (the most batching could buy: {res['model_gain']:.1f}x).",
        "",
        "## Targets",
        "",
        h.rows_table(
            checks, {"ratio": "measure", "value": "value", "target": "target", "verdict": "verdict"}
        ),
        "",
        "## HTTP (`POST /<app>/predict`)",
        "",
    ]
    rows = []
    for app, s in http.items():
        b = s.get("batches") or {}
        rows.append(
            [
                app,
                s["callers"],
                s["rps"],
                s["p50_ms"],
                s["p95_ms"],
                s["errors"],
                b.get("mean_batch") or "-",
                b.get("max_batch") or "-",
                b.get("most_common", "-") or "-",
                s["cpu_cores_foreign"],
            ]
        )
    lines.append(
        h.md_table(
            [
                "app",
                "callers",
                "rps",
                "p50 ms",
                "p95 ms",
                "errors",
                "mean batch",
                "max batch",
                "commonest batch sizes (size x count)",
                "other cores",
            ],
            rows,
        )
    )
    if handle:
        lines += ["", "## Deployment handle, from the driver (no HTTP)", ""]
        rows = []
        for label, s in handle.items():
            b = s["batches"]
            rows.append(
                [
                    label,
                    s["callers"],
                    s["rps"],
                    s["p50_ms"],
                    s["p95_ms"],
                    s["errors"],
                    b["mean_batch"] or "-",
                    b["max_batch"] or "-",
                    b["most_common"] or "-",
                ]
            )
        lines.append(
            h.md_table(
                [
                    "app",
                    "callers",
                    "rps",
                    "p50 ms",
                    "p95 ms",
                    "errors",
                    "mean batch",
                    "max batch",
                    "commonest batch sizes",
                ],
                rows,
            )
        )
    lines += ["", "## Reading", ""] + [f"- {n}" for n in res["notes"]]
    lines += [
        "",
        "## Conditions",
        "",
        f"- {json.dumps(res['machine'])}.",
        "- `other cores`: CPU used, while measuring, by processes outside the benchmark's own "
        "process tree (other work sharing the machine).",
    ]
    return "\n".join(lines)
