"""The plot of one or both runs: latency, throughput and replicas over time."""

from __future__ import annotations

from typing import Any

from _harness import plots

from .scenario import COLORS, LABELS


def plot(results: dict[str, dict[str, Any]], spec: dict[str, Any], path: str) -> None:
    """Latency, throughput and replicas over time, both policies overlaid."""
    plt = plots.pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(11, 10), sharex=True)
    total = spec["low_s"] + spec["high_s"] + spec["tail_s"]
    for policy, a in results.items():
        c = COLORS.get(policy, None)
        ws = a["windows"]
        ts = [w["t"] + 0.5 for w in ws]
        axes[0].plot(ts, [w["p95_ms"] for w in ws], color=c, label=f"{LABELS[policy]} p95")
        axes[0].plot(ts, [w["p50_ms"] for w in ws], color=c, ls=":", label=f"{LABELS[policy]} p50")
        axes[1].plot(ts, [w["rps"] for w in ws], color=c, label=LABELS[policy])
        rt = [r[0] for r in a["replica_series"]]
        axes[2].step(
            rt,
            [r[1] for r in a["replica_series"]],
            where="post",
            color=c,
            label=f"{LABELS[policy]} running",
        )
        axes[2].step(
            rt,
            [r[2] for r in a["replica_series"]],
            where="post",
            color=c,
            ls="--",
            alpha=0.6,
            label=f"{LABELS[policy]} target",
        )
    any_run = next(iter(results.values()))
    for ax in axes:
        ax.axvspan(any_run["t_step_up_s"], any_run["t_step_down_s"], color="grey", alpha=0.12)
        ax.grid(alpha=0.3)
    axes[0].axhline(spec["slo_ms"], color="red", lw=1, ls="--", label=f"SLO {spec['slo_ms']} ms")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("latency, 1-s windows (ms)")
    axes[0].legend(fontsize=8, ncol=2, loc="upper right")
    axes[1].set_ylabel("throughput (req/s)")
    axes[1].legend(fontsize=8)
    axes[2].set_ylabel("replicas of the model node")
    axes[2].set_xlabel(
        f"seconds since the load started (shaded: {spec['high_users']} users; "
        f"otherwise {spec['low_users']})"
    )
    axes[2].legend(fontsize=8, ncol=2, loc="upper left")
    axes[2].set_xlim(0, total)
    fig.suptitle(
        f"Step load {spec['low_users']} -> {spec['high_users']} -> {spec['low_users']} users, "
        f"{spec['service_ms']:.0f} ms per request, max_ongoing_requests {spec['max_ongoing']}"
    )
    plots.save(fig, path, dpi=110)
