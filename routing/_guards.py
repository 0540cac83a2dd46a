"""What a router's state refuses before it changes anything: rewards outside the router's range,
malformed or out-of-range decisions, bad weights, long reasons; and the repair of snapshots an
older version let poison.

Every check raises :class:`~nodes.errors.RequestValidationError` (422) naming the field.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from nodes.errors import RequestValidationError
from routing.bandits import check_context
from routing.spec import RouterNode

__all__ = [
    "MAX_REASON_CHARS",
    "REWARD_RANGE",
    "check_decision",
    "check_reason",
    "check_reward",
    "check_weights",
    "reward_range",
    "unpoisoned",
]

log = logging.getLogger(__name__)

#: Rewards accepted by routers without a bandit (weighted, A/B, canary), for their experiment
#: report and the canary's reward gate: real-valued, far from float overflow.
REWARD_RANGE = (-1e6, 1e6)
#: Longest free-text ``reason`` a control action takes (it is kept in the canary's history).
MAX_REASON_CHARS = 200
#: Largest magnitude of a reward mean or squared-deviation sum a snapshot may hold: beyond it,
#: squares overflow, and bounded rewards never get there.
_SANE = 1e150
_REWARD_KEYS = {"count", "mean", "m2", "binary"}


def reward_range(spec: RouterNode) -> tuple[float, float]:
    """Rewards ``spec`` accepts: its bandit's ``reward_range``, else :data:`REWARD_RANGE`."""
    return spec.bandit.reward_range if spec.bandit is not None else REWARD_RANGE


def check_reward(spec: RouterNode, reward: Any) -> float:
    """``reward`` as a float if it lies in the router's :func:`reward_range`."""
    if isinstance(reward, bool) or not isinstance(reward, (int, float)):
        raise RequestValidationError("reward", f"must be a finite number, got {reward!r}")
    low, high = reward_range(spec)
    if not low <= reward <= high:  # NaN fails this too
        kind = spec.bandit.algorithm if spec.bandit is not None else spec.policy
        raise RequestValidationError(
            "reward",
            f"must be in [{low:g}, {high:g}] for {kind} router {spec.name!r}, got {reward!r}",
        )
    return float(reward)


def check_decision(spec: RouterNode, decision: Any) -> tuple[int, list[float] | None]:
    """``(arm, context)`` of a token's decision for this router (``[arm]`` or
    ``[arm, context]``); the context is checked against LinUCB's features and ``feature_range``
    (it was signed, but the range may have tightened since) and None for other policies."""
    n = len(spec.arms)
    if not isinstance(decision, (list, tuple)) or len(decision) not in (1, 2):
        raise RequestValidationError(
            "token", f"a decision is [arm] or [arm, context], got {decision!r}"
        )
    arm = decision[0]
    if isinstance(arm, bool) or not isinstance(arm, int) or not 0 <= arm < n:
        raise RequestValidationError("token", f"names arm {arm!r} of {n}")
    config = spec.bandit
    if config is None or config.algorithm != "linucb":
        return arm, None
    context = decision[1] if len(decision) > 1 else None
    try:
        checked = check_context(
            context, config.features, intercept=config.intercept, bounds=config.feature_range
        )
    except ValueError as exc:
        raise RequestValidationError("token", str(exc)) from None
    return arm, checked


def check_weights(n: int, weights: Any) -> list[float]:
    """``weights`` for ``n`` arms, normalised to sum to 1."""
    if (
        not isinstance(weights, list)
        or len(weights) != n
        or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
            for w in weights
        )
        or not 0 < sum(weights) < math.inf
    ):
        raise RequestValidationError(
            "weights", f"must be {n} numbers >= 0 with a positive sum, got {weights!r}"
        )
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def check_reason(body: Mapping[str, Any]) -> str | None:
    """The control body's ``reason``: None, or a string of at most :data:`MAX_REASON_CHARS`."""
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS):
        got = f"{len(reason)} characters" if isinstance(reason, str) else repr(reason)
        raise RequestValidationError(
            "reason", f"must be a string of at most {MAX_REASON_CHARS} characters, got {got}"
        )
    return reason


def unpoisoned(router: str, section: str, tree: Any) -> Any:
    """``tree`` (a snapshot section) with reward figures no bounded reward could produce reset,
    and other non-finite numbers (a canary event's figures) replaced by None; logs each."""
    found: list[str] = []

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            if set(node) == _REWARD_KEYS and not all(
                isinstance(node[k], (int, float)) and abs(node[k]) <= _SANE for k in ("mean", "m2")
            ):
                found.append(path)
                return {"count": 0, "mean": 0.0, "m2": 0.0, "binary": True}
            return {k: walk(v, f"{path}.{k}") for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        if isinstance(node, float) and not math.isfinite(node):
            found.append(path)
            return None
        return node

    clean = walk(tree, section)
    if found:
        more = f" and {len(found) - 10} more" if len(found) > 10 else ""
        log.error(
            "router %s: the snapshot holds poisoned figures (%s%s); they were reset",
            router,
            ", ".join(found[:10]),
            more,
        )
    return clean
