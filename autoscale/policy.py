"""Pure autoscaling decision for one node (:func:`decide`).

Nothing here touches Ray: metrics, state and the clock come in, a replica count and the new
state go out. The state is a plain JSON-serialisable dict, so Ray Serve can keep it as the
deployment's ``policy_state`` between control-loop ticks. The whole graph is decided together
by :func:`autoscale.graph_decision.decide_graph`, on the same rules (:func:`propose`,
:func:`commit_state`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autoscale.metrics import NodeMetrics
from autoscale.settings import ScalingSettings

__all__ = ["Proposal", "capacity_need", "commit_state", "decide", "propose"]

#: Keys of one node's policy state.
LAST_CHANGE_KEY = "last_change_s"
COMFORTABLE_SINCE_KEY = "comfortable_since_s"
REASON_KEY = "reason"

# Clock values are differences of large floats; a cooldown of 30 s must not read as 29.999...
_EPS_S = 1e-6


@dataclass(frozen=True)
class Proposal:
    """What one node would do on its own, before graph-level rules."""

    desired: int
    load_ratio: float
    latency_ratio: float
    need: int
    comfortable: bool
    reason: str

    @property
    def pressure(self) -> float:
        return max(self.load_ratio, self.latency_ratio)


def _ratios(settings: ScalingSettings, m: NodeMetrics) -> tuple[float, float]:
    """Load ratio (ongoing per replica / target) and latency ratio (p95 / SLO; 0 if unknown)."""
    if m.current_replicas == 0:
        load = math.inf if m.ongoing_requests > 0 else 0.0
    else:
        load = m.ongoing_requests / m.current_replicas / settings.target_queue_per_replica
    latency = 0.0
    if settings.slo_p95_ms is not None and m.p95_ms is not None:
        latency = m.p95_ms / settings.slo_p95_ms
    return load, latency


def capacity_need(rate: float | None, service_time_ms: float | None, utilisation: float) -> int:
    """Replicas that serve ``rate`` req/s of ``service_time_ms`` each at ``utilisation``.

    ``ceil(rate * service_time_ms / 1000 / utilisation)``; 0 when either is unknown.
    """
    if not rate or not service_time_ms:
        return 0
    return math.ceil(rate * service_time_ms / 1000.0 / utilisation - 1e-9)


def propose(
    settings: ScalingSettings,
    m: NodeMetrics,
    state: Mapping[str, Any],
    now: float,
    rate: float | None,
) -> Proposal:
    """Apply :func:`decide`'s rules, sizing for arrival ``rate`` (own or anticipated)."""
    cur, lo, hi = m.current_replicas, settings.min_replicas, settings.max_replicas
    load, latency = _ratios(settings, m)
    pressure = max(load, latency)
    # Aim a scale-down midway between the headroom and the target, so the next reading
    # lands inside the hysteresis band rather than back over the target.
    fill = (1.0 + settings.downscale_headroom) / 2.0
    util = settings.target_utilisation
    need = min(capacity_need(rate, m.service_time_ms, util), hi)
    down_floor = min(capacity_need(rate, m.service_time_ms, util * fill), hi)

    def out(desired: int, reason: str, comfortable: bool = False) -> Proposal:
        return Proposal(desired, load, latency, need, comfortable, reason)

    if cur < lo:
        return out(lo, "up:min_replicas")
    if cur > hi:
        return out(hi, "down:max_replicas")
    if cur == 0:
        if m.ongoing_requests <= 0 and need <= 0:
            return out(0, "hold:idle", comfortable=True)
        wanted = max(1, math.ceil(m.ongoing_requests / settings.target_queue_per_replica), need)
        return out(min(wanted, settings.max_step, hi), "up:cold_start")

    if pressure > 1 or need > cur:
        if cur >= hi:
            return out(cur, "hold:max_replicas")
        last_change = state.get(LAST_CHANGE_KEY)
        if last_change is not None and now - last_change + _EPS_S < settings.upscale_cooldown_s:
            return out(cur, "hold:upscale_cooldown")
        proportional = math.ceil(cur * pressure - 1e-9) if pressure > 1 else cur
        desired = max(proportional, need, cur + 1)
        if need > proportional:
            reason = "up:rate"
        else:
            reason = "up:latency" if latency > load else "up:load"
        return out(min(desired, cur + settings.max_step, hi), reason)

    comfortable = load < settings.downscale_headroom and latency < settings.downscale_headroom
    if not comfortable:
        return out(cur, "hold")
    if cur <= lo:
        return out(cur, "hold:min_replicas", comfortable=True)
    since = state.get(COMFORTABLE_SINCE_KEY)
    since = now if since is None else since
    if now - since + _EPS_S < settings.downscale_cooldown_s:
        return out(cur, "hold:downscale_cooldown", comfortable=True)
    desired = max(math.ceil(cur * pressure / fill - 1e-9), down_floor, lo, cur - settings.max_step)
    if desired >= cur:
        return out(cur, "hold:no_room", comfortable=True)
    return out(desired, "down", comfortable=True)


def commit_state(
    p: Proposal, current: int, final: int, state: Mapping[str, Any], now: float, reason: str
) -> dict[str, Any]:
    """The state after ``final`` replicas were chosen (``p`` was the node's own proposal)."""
    new: dict[str, Any] = dict(state)
    if final != current:
        new[LAST_CHANGE_KEY] = now
        # After a scale-down the next step needs another full cooldown of comfort.
        new[COMFORTABLE_SINCE_KEY] = now if final < current else None
    elif p.comfortable and final == p.desired:
        since = state.get(COMFORTABLE_SINCE_KEY)
        new[COMFORTABLE_SINCE_KEY] = now if since is None else since
    else:
        new[COMFORTABLE_SINCE_KEY] = None
    new.setdefault(LAST_CHANGE_KEY, None)
    new[REASON_KEY] = reason
    return new


def decide(
    settings: ScalingSettings, metrics: NodeMetrics, state: Mapping[str, Any], now: float
) -> tuple[int, dict[str, Any]]:
    """Desired replica count of one node, and its new policy state.

    Let ``cur = metrics.current_replicas``, ``load = ongoing_requests / cur /
    target_queue_per_replica``, ``latency = p95_ms / slo_p95_ms`` (0 without an SLO or a
    p95) and, when ``arrival_rate`` and ``service_time_ms`` are both known, ``need =
    ceil(arrival_rate * service_time_ms / 1000 / target_utilisation)`` (the replicas that
    serve the arrivals at the target utilisation; 0 otherwise). The rules, first match wins:

    1. Bounds: ``cur < min_replicas`` returns ``min_replicas``; ``cur > max_replicas`` returns
       ``max_replicas`` at once (no cooldown, no step limit).
    2. Cold start: from 0 replicas with requests waiting, return
       ``max(1, ceil(ongoing / target_queue_per_replica), need)``, at most ``max_step`` and
       ``max_replicas``, at once, like Ray Serve's cold-start path.
    3. Scale up when ``max(load, latency) > 1`` or ``need > cur``: to
       ``max(ceil(cur * max(load, latency)), need, cur + 1)``, at most ``cur + max_step`` and
       ``max_replicas``. Held at ``cur`` while less than ``upscale_cooldown_s`` has passed
       since the last change (up or down) -- new replicas are still starting -- or at
       ``max_replicas``.
    4. Scale down only when ``load`` and ``latency`` are both below ``downscale_headroom``
       (the node is *comfortable*) and have been for ``downscale_cooldown_s`` without a
       break: the state remembers since when (``comfortable_since_s``). A reading that is not
       comfortable resets that timer, and so does every change of replica count, so each
       step down needs a full cooldown. With ``fill = (1 + downscale_headroom) / 2``, the step
       goes to ``max(ceil(cur * max(load, latency) / fill), ceil(arrival_rate *
       service_time_ms / 1000 / (target_utilisation * fill)))`` replicas -- the second term
       keeps enough capacity for the arrivals, which queue length alone cannot show while
       replicas keep up -- removing at most ``max_step`` and never going below
       ``min_replicas``. When that removes nothing the node holds.
    5. Otherwise hold at ``cur``.

    The result is always within ``[min_replicas, max_replicas]``.

    Args:
        settings: The node's scaling settings.
        metrics: The node's recent metrics.
        state: The state this function returned last time (``{}`` the first time).
        now: The current time in seconds (any monotonic clock; injected for tests).

    Returns:
        The desired replica count and the new state: a JSON-serialisable dict with
        ``last_change_s``, ``comfortable_since_s`` and ``reason`` (e.g. ``"up:load"``,
        ``"hold:upscale_cooldown"``, ``"down"``), to pass back on the next call.
    """
    p = propose(settings, metrics, state, now, metrics.arrival_rate)
    return p.desired, commit_state(p, metrics.current_replicas, p.desired, state, now, p.reason)
