"""What a router's state reports: live state for ``/graph`` and the experiment report."""

from __future__ import annotations

from typing import Any

# The state is typed Any: routing.state imports this module (and the package has no cycles).
RouterState = Any

__all__ = ["experiment_report", "router_summary", "shadow_report"]


def router_summary(state: RouterState, now: float) -> dict[str, Any]:
    """Live state of a router for ``GET /<graph>/graph``: policy, arms, split, requests, the
    policy's own state (canary stage and history, bandit posterior, blue/green arm, pending
    switch and history), shadow figures, resent deltas skipped, and what the last load of the
    state recovered (``recovery``, only after damage)."""
    out: dict[str, Any] = {
        "policy": state.spec.policy,
        "arms": list(state.labels),
        "weights": None if state.bandit is not None else state.current_weights(now),
        "requests": {n: s.requests for n, s in state.stats.arms.items()},
        "policy_fallbacks": state.policy_fallbacks,
    }
    if state.spec.ab is not None and state.spec.ab.key is not None:
        out["sticky_key"] = state.spec.ab.key.model_dump(exclude_none=True)
    if state.canary is not None:
        out["canary"] = state.canary.state(now)
        out["canary"]["history"] = [e.to_dict() for e in state.canary.history]
    if state.bandit is not None:
        out["bandit"] = state.bandit.summary()
    if state.shadow is not None:
        out["shadow"] = shadow_report(state)
    if state.blue_green is not None:
        out["blue_green"] = state.blue_green.summary(now)
    out["duplicate_deltas"] = state.ledger.duplicates
    if state.recovery is not None:
        out["recovery"] = dict(state.recovery)
    return out


def shadow_report(state: RouterState) -> dict[str, Any]:
    """Shadow figures: agreement rate, mean absolute difference, errors, drops, timeouts."""
    assert state.shadow is not None
    return {
        **state.shadow_counts,
        "agreement_rate": state.shadow.overall.agreement_rate,
        "mean_abs_diff": state.shadow.overall.mean_abs_diff,
        **state.shadow.to_dict(),
    }


def experiment_report(state: RouterState, now: float) -> dict[str, Any]:
    """The experiment report: per arm requests, errors, latency, reward CI, vs control."""
    out = {"policy": state.spec.policy, **state.stats.report()}
    if state.bandit is not None:
        out["bandit"] = state.bandit.summary()
    if state.canary is not None:
        out["canary"] = state.canary.state(now)
    if state.shadow is not None:
        out["shadow"] = shadow_report(state)
    return out
