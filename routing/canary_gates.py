"""A canary's gates applied: the candidate's figures over a step against the stable baselines.

:func:`gate_breaches` lists every gate of a :class:`~routing.config.CanaryGates` the candidate
breaches (error rate, error rate above the stable arm's, p95 latency ratio, mean reward below
the stable arm's); :func:`arm_figures` is the figures of one arm the history keeps.
"""

from __future__ import annotations

from typing import Any

from routing.arm_stats import ArmStats
from routing.config import CanaryGates

__all__ = ["arm_figures", "gate_breaches"]


def arm_figures(stats: ArmStats) -> dict[str, Any]:
    """One arm's figures as the canary reports them (JSON)."""
    return {
        "requests": stats.requests,
        "errors": stats.errors,
        "error_rate": stats.error_rate,
        "p95_ms": stats.latency.quantile(0.95),
        "reward_count": stats.reward.count,
        "reward_mean": stats.reward.mean if stats.reward.count else None,
    }


def gate_breaches(
    gates: CanaryGates, cand: ArmStats, base: ArmStats | None, rbase: ArmStats | None
) -> list[dict[str, Any]]:
    """The gates the candidate breaches against the baselines (None: not enough data)."""
    checks: list[tuple[str, float, str]] = []
    rate = cand.error_rate
    if rate is not None:
        checks.append(("max_error_rate", rate, "candidate error rate"))
        if base is not None:
            base_rate = base.error_rate or 0.0
            text = f"candidate error rate {rate:.3f} - stable's {base_rate:.3f}"
            checks.append(("max_error_rate_delta", rate - base_rate, text))
    p95 = cand.latency.quantile(0.95)
    base_p95 = base.latency.quantile(0.95) if base is not None else None
    if p95 is not None and base_p95:
        text = f"candidate p95 {p95:.1f} ms / stable's {base_p95:.1f} ms"
        checks.append(("max_p95_ratio", p95 / base_p95, text))
    if rbase is not None and cand.reward.count >= gates.min_reward_count:
        diff = cand.reward.mean - rbase.reward.mean
        text = f"candidate mean reward {cand.reward.mean:.3f} - stable's {rbase.reward.mean:.3f}"
        checks.append(("min_reward_delta", diff, text))
    found = []
    for gate, observed, text in checks:
        limit = getattr(gates, gate)
        if limit is None:
            continue
        floor = gate.startswith("min_")
        if observed < limit if floor else observed > limit:
            message = f"{text} = {observed:.3f} {'<' if floor else '>'} {gate} {limit:g}"
            found.append({"gate": gate, "limit": limit, "observed": observed, "message": message})
    return found
