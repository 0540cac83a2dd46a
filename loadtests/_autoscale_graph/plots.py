"""The plot: one panel per node (running and target replicas, requests waiting), one for
latency and one for throughput."""

from __future__ import annotations

from typing import Any

from _harness import plots

from .scenario import COLORS, NODES


def plot(a: dict[str, Any], spec: dict[str, Any], path: str) -> None:
    """Replicas of every node over time, with the policy's decisions marked, then latency and
    throughput."""
    plt = plots.pyplot()
    fig, axes = plt.subplots(len(NODES) + 2, 1, figsize=(11, 15), sharex=True)
    total = spec["low_s"] + spec["high_s"] + spec["tail_s"]
    for ax, n in zip(axes, NODES, strict=False):
        node = a["nodes"][n]
        ser = node["series"]
        ts = [r[0] for r in ser]
        c = COLORS[n]
        ax.step(ts, [r[1] for r in ser], where="post", color=c, label="running")
        ax.step(ts, [r[2] for r in ser], where="post", color=c, ls="--", alpha=0.7, label="target")
        ax.axhline(node["max_replicas"], color="grey", lw=0.8, ls=":", label="max_replicas")
        ax2 = ax.twinx()
        ax2.plot(ts, [r[4] for r in ser], color="black", lw=0.8, alpha=0.5, label="waiting")
        ax2.set_ylabel("requests waiting", fontsize=8)
        ax2.set_ylim(bottom=0)
        for d in a["decisions"]:
            if d["node"] == n:
                ax.annotate(
                    d["reason"],
                    (d["t"], d["to"]),
                    fontsize=6,
                    rotation=60,
                    xytext=(2, 4),
                    textcoords="offset points",
                )
        ax.set_ylabel(f"{n}: replicas")
        ax.set_ylim(0, node["max_replicas"] + 1.5)
        lines = ax.get_legend_handles_labels()
        more = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper left", ncol=4)
    ws = a["windows"]
    wt = [w["t"] + 0.5 for w in ws]
    lat, thr = axes[-2], axes[-1]
    lat.plot(wt, [w["p95_ms"] for w in ws], color="tab:red", label="p95")
    lat.plot(wt, [w["p50_ms"] for w in ws], color="tab:red", ls=":", label="p50")
    lat.axhline(
        spec["slo_ms"], color="red", lw=1, ls="--", label=f"slow's SLO {spec['slo_ms']:.0f} ms"
    )
    lat.set_yscale("log")
    lat.set_ylabel("end-to-end latency,\n1-s windows (ms)")
    lat.legend(fontsize=8, loc="upper right")
    thr.plot(wt, [w["rps"] for w in ws], color="tab:blue")
    thr.set_ylabel("throughput (req/s)")
    for ax in axes:
        ax.axvspan(a["t_step_up_s"], a["t_step_down_s"], color="grey", alpha=0.12)
        ax.grid(alpha=0.3)
    thr.set_xlabel(
        f"seconds since the load started (shaded: {spec['high_users']} users; "
        f"otherwise {spec['low_users']})"
    )
    thr.set_xlim(0, total)
    fig.suptitle(
        "Graph policy: ingress -> prep -> slow -> split (80 % a, 20 % b); step "
        f"{spec['low_users']} -> {spec['high_users']} -> {spec['low_users']} users"
    )
    plots.save(fig, path, dpi=100)
