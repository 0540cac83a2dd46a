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

from autoscale.calm import CALM_KEY, Calm
from autoscale.capacity import (
    capacity_need,
    engine_ratio,
    pressure_ratios,
    queue_wait_ms,
    serving_replicas,
    staffing_need,
)
from autoscale.metrics import NodeMetrics
from autoscale.settings import ScalingSettings

__all__ = [
    "Proposal",
    "capacity_need",
    "commit_state",
    "decide",
    "propose",
    "queue_wait_ms",
    "serving_replicas",
]

#: Keys of one node's policy state.
LAST_CHANGE_KEY = "last_change_s"
COMFORTABLE_SINCE_KEY = "comfortable_since_s"
REASON_KEY = "reason"
#: Whether no request waited for a replica since the node became comfortable.
QUIET_KEY = "quiet"
#: The last probing step down: ``{"count": replicas after it, "at": when}``.
PROBE_KEY = "probe"
#: A probe that had to be undone: ``{"count": ..., "rate": the arrival rate then}``.
PROBE_FAILED_KEY = "probe_failed"
#: Since when the node has read over its targets without a change of replica count.
PRESSED_KEY = "pressed_since_s"

#: Mean requests waiting for a replica (Ray's ``total_queued_requests``) above which the node
#: is taken to make requests wait: below it they are routed as they come.
WAITING = 0.5
#: An anticipated rate (from the callers) this much above the node's own drives a scale-up by
#: rate even before anything waits.
ANTICIPATION = 1.1
#: No step down while the arrival rate is over this many times what it was when the node
#: became comfortable: the load is rising, the replicas will be needed.
RISING = 1.2
#: A rate under this share of its mean since the node became comfortable has fallen: the
#: node is sized for it rather than for the mean (noise at a steady rate stays well above).
FALLING = 0.5
#: Under a p95 SLO, a reading over target with little of its latency a wait for a replica
#: scales up only once the node has read over its targets this long: a window's p95 is noisy.
CONFIRM_S = 1.0
#: A probe needs the most requests in flight of the comfortable period within this many times
#: one replica fewer's target: a fixed set of clients reads at its count, give or take the
#: metrics' timing; open-loop arrivals come in bursts far over it.
PROBE_PEAK = 1.25
#: A scale-up this soon after a probing step down undoes it.
PROBE_WATCH_S = 60.0
#: A count whose probe failed is tried again only once the rate fell under this share of the
#: rate it failed at.
PROBE_RETRY_RATE = 0.8

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
    waiting: bool = False
    rate: float | None = None
    pressed: bool = False

    @property
    def pressure(self) -> float:
        return max(self.load_ratio, self.latency_ratio)


def propose(
    settings: ScalingSettings,
    m: NodeMetrics,
    state: Mapping[str, Any],
    now: float,
    rate: float | None,
) -> Proposal:
    """Apply :func:`decide`'s rules, sizing for arrival ``rate`` (own or anticipated)."""
    cur, lo, hi = m.current_replicas, settings.min_replicas, settings.max_replicas
    load, latency = pressure_ratios(settings, m)
    # An LLM engine's own signals count as latency: time to first token against its SLO and
    # KV-cache usage against its target; requests in its scheduler's queue wait.
    engine = engine_ratio(settings, m)
    engine_waits = (m.engine_waiting or 0.0) > WAITING
    latency = max(latency, engine)
    pressure = max(load, latency)
    # Aim a scale-down midway between the headroom and the target, so the next reading
    # lands inside the hysteresis band rather than back over the target.
    fill = (1.0 + settings.downscale_headroom) / 2.0
    util = settings.target_utilisation
    need = min(capacity_need(rate, m.service_time_ms, util), hi)

    waiting = m.queued_requests > WAITING or engine_waits
    own = m.arrival_rate or 0.0
    anticipated = rate is not None and rate > ANTICIPATION * own

    def out(
        desired: int, reason: str, comfortable: bool = False, pressed: bool = False
    ) -> Proposal:
        return Proposal(desired, load, latency, need, comfortable, reason, waiting, rate, pressed)

    if cur < lo:
        return out(lo, "up:min_replicas")
    if cur > hi:
        return out(hi, "down:max_replicas")
    if cur == 0:
        if m.ongoing_requests <= 0 and need <= 0:
            return out(0, "hold:idle", comfortable=True)
        wanted = max(1, math.ceil(m.ongoing_requests / settings.target_queue_per_replica), need)
        return out(min(wanted, settings.max_step, hi), "up:cold_start")

    # By rate only while requests wait for a replica or the callers send more than the node
    # sees yet: a node whose callers wait for its answers (a fixed set of clients) runs its
    # replicas full without a queue, and more replicas would only idle.
    # Over target is worth a replica only where it shows: in flight over a short window runs
    # over target by chance at any load, and a p95 over the SLO with nothing waiting is the
    # node's own slowness, which replicas do not cure. With an SLO, a queue is let be while
    # latency stays under ``fill`` of it; twice the target in flight is a queue whatever shows.
    headroom = settings.downscale_headroom
    slo = settings.slo_p95_ms is not None or settings.ttft_slo_p95_ms is not None
    if slo:
        # The SLO is the judge: a queue is let be while latency stays under ``fill`` of it,
        # and the node grows in proportion to how far over that latency is.
        loaded = (latency >= fill and load > 1) or (latency > 1 and waiting)
        up_pressure = latency / fill
    else:
        loaded = (load > 1 and waiting) or load > 2
        up_pressure = pressure
    # Requests waiting in an engine's scheduler: its batch is full (or its KV cache); with a
    # time-to-first-token SLO, let be while that stays under ``fill`` of it.
    loaded = loaded or (engine_waits and (settings.ttft_slo_p95_ms is None or engine >= fill))
    # With an SLO, requests waiting is a reason to size by rate only near it: a fixed set of
    # clients that send as fast as answers come keeps a queue at any replica count.
    rate_up = anticipated or (waiting and (not slo or latency >= fill))
    if loaded or (need > cur and rate_up):
        if cur >= hi:
            return out(cur, "hold:max_replicas", pressed=True)
        last_change = state.get(LAST_CHANGE_KEY)
        if last_change is not None and now - last_change + _EPS_S < settings.upscale_cooldown_s:
            return out(cur, "hold:upscale_cooldown", pressed=True)
        # Little of the latency is a wait for a replica: the p95 of one short window, which
        # may be noise. Scale up once it held for CONFIRM_S.
        wait_ms = queue_wait_ms(m)
        noisy = (
            settings.slo_p95_ms is not None
            and wait_ms < (1 - fill) * settings.slo_p95_ms
            and not (m.queued_requests > 0 and wait_ms == 0)  # a wait it cannot tell
            and not anticipated
        )
        pressed_since = state.get(PRESSED_KEY)
        if noisy and (pressed_since is None or now - pressed_since + _EPS_S < CONFIRM_S):
            return out(cur, "hold:confirming", pressed=True)
        # The figures come from the replicas serving: those still starting are not in them.
        serving = max(serving_replicas(m), 1)
        proportional = math.ceil(serving * up_pressure - 1e-9) if up_pressure > 1 else serving
        if serving < cur and max(proportional, need) <= cur:
            return out(cur, "hold:starting", pressed=True)
        desired = max(proportional, need, cur + 1)
        if need > proportional:
            reason = "up:rate"
        else:
            reason = "up:latency" if slo or latency > load else "up:load"
        return out(min(desired, cur + settings.max_step, hi), reason, pressed=True)

    # Latency that no request spent waiting for a replica is the node's own (its service
    # time): fewer replicas would not raise it, so only the SLO itself bounds a scale-down.
    # A reading is comfortable under ``fill`` of the target (under it, with an SLO to judge);
    # the mean of the readings since the node became comfortable must be under the headroom
    # (``fill``) for a step down: one reading of a short window is noisy, a node at half its
    # target reads 0.4 to 0.7.
    queueing = waiting or latency >= 1
    # An engine's KV cache fills with what each replica holds: it always counts.
    comfortable = (
        load < (1.0 if slo else fill) and (latency < headroom or not queueing) and engine < headroom
    )
    if not comfortable:
        return out(cur, "hold")
    if cur <= lo:
        return out(cur, "hold:min_replicas", comfortable=True)
    since = state.get(COMFORTABLE_SINCE_KEY)
    since = now if since is None else since
    if now - since + _EPS_S < settings.downscale_cooldown_s:
        return out(cur, "hold:downscale_cooldown", comfortable=True)
    calm = Calm.of(state)
    mean_load = calm.mean_load(load)
    if mean_load >= (fill if slo else headroom):
        return out(cur, "hold:busy", comfortable=True)
    mean_rate = calm.mean_rate(rate)
    if calm.first_rate and (rate or 0.0) > RISING * calm.first_rate:  # on its way up: not now
        return out(cur, "hold:rising", comfortable=True)
    # Nothing in flight and nothing arriving over the rate window: idle now, whatever the
    # calm period's mean was (so a node with ``min_replicas: 0`` gets back to zero).
    idle = m.ongoing_requests <= 0 and not (m.arrival_rate or 0.0) > 0 and not rate
    down_pressure = 0.0 if idle else pressure if queueing else calm.recent_load(load, now)
    # Sized for the rate since the node became comfortable (one window's rate is noisy, a
    # replica too few makes requests wait), unless the rate fell well under that: then for now.
    floor_rate = rate if (rate or 0.0) < FALLING * mean_rate else max(rate or 0.0, mean_rate)
    if slo:  # the SLO, not a headroom, says when it is short: square-root staffing
        down_floor = min(staffing_need(floor_rate, m.service_time_ms), hi)
    else:
        down_floor = min(capacity_need(floor_rate, m.service_time_ms, util * fill), hi)
    desired = max(
        math.ceil(cur * down_pressure / fill - 1e-9), down_floor, lo, cur - settings.max_step
    )
    if desired < cur:
        return out(desired, "down", comfortable=True)
    if _may_probe(settings, m, state, rate, waiting, max(calm.peak_load, load)):
        return out(cur - 1, "down:probe", comfortable=True)
    return out(cur, "hold:no_room", comfortable=True)


def _may_probe(
    settings: ScalingSettings,
    m: NodeMetrics,
    state: Mapping[str, Any],
    rate: float | None,
    waiting: bool,
    peak_load: float,
) -> bool:
    """Whether to try one replica fewer than the headroom rules allow: nothing waited for a
    replica all through the comfortable period, and one fewer would still hold the most
    requests in flight of that period (``peak_load``, its highest load ratio, this reading's
    included) within target and serve the rate at full utilisation. A probe undone within
    :data:`PROBE_WATCH_S` is not repeated for that count until the rate has fallen."""
    fewer = m.current_replicas - 1
    if fewer < max(settings.min_replicas, 1) or waiting or not state.get(QUIET_KEY, False):
        return False
    # The peak on one replica fewer: a fixed set of clients holds its count, open-loop
    # arrivals come in bursts over it.
    if peak_load * m.current_replicas / fewer > PROBE_PEAK:
        return False
    if capacity_need(rate, m.service_time_ms, 1.0) > fewer:
        return False
    failed = state.get(PROBE_FAILED_KEY)
    if failed and fewer <= failed["count"]:
        return (rate or 0.0) < PROBE_RETRY_RATE * (failed.get("rate") or 0.0)
    return True


def commit_state(
    p: Proposal, current: int, final: int, state: Mapping[str, Any], now: float, reason: str
) -> dict[str, Any]:
    """The state after ``final`` replicas were chosen (``p`` was the node's own proposal)."""
    new: dict[str, Any] = dict(state)
    if final != current:
        new[LAST_CHANGE_KEY] = now
        # After a scale-down the next step needs another full cooldown of comfort.
        new[COMFORTABLE_SINCE_KEY] = now if final < current else None
        new.pop(QUIET_KEY, None)
        new.pop(CALM_KEY, None)
        if final < current:
            new[QUIET_KEY] = not p.waiting
            new[CALM_KEY] = Calm.after_change(p.rate)
        probe = state.get(PROBE_KEY)
        if final > current and probe and now - probe["at"] < PROBE_WATCH_S:
            new[PROBE_FAILED_KEY] = {"count": probe["count"], "rate": p.rate}
        new.pop(PROBE_KEY, None)
        if reason == "down:probe":
            new[PROBE_KEY] = {"count": final, "at": now}
    elif p.comfortable and final == p.desired:
        since = state.get(COMFORTABLE_SINCE_KEY)
        new[COMFORTABLE_SINCE_KEY] = now if since is None else since
        quiet = state.get(QUIET_KEY, True) if since is not None else True
        new[QUIET_KEY] = quiet and not p.waiting
        calm = Calm.of(state) if since is not None else Calm()
        new[CALM_KEY] = calm.add(p.load_ratio, p.rate, now)
    else:
        new[COMFORTABLE_SINCE_KEY] = None
        new.pop(QUIET_KEY, None)
        new.pop(CALM_KEY, None)
    if p.pressed and final == current:
        new[PRESSED_KEY] = state.get(PRESSED_KEY, now)
    else:
        new.pop(PRESSED_KEY, None)
    new.setdefault(LAST_CHANGE_KEY, None)
    new[REASON_KEY] = reason
    return new


def decide(
    settings: ScalingSettings, metrics: NodeMetrics, state: Mapping[str, Any], now: float
) -> tuple[int, dict[str, Any]]:
    """Desired replica count of one node, and its new policy state.

    Let ``cur = metrics.current_replicas``, ``load = ongoing_requests / cur /
    target_queue_per_replica``, ``latency = (p95_ms + wait) / slo_p95_ms`` with ``wait`` the
    time queued requests wait for a replica (:func:`queue_wait_ms`; 0 without an SLO or a
    p95; for an LLM node also ``ttft_p95_ms / ttft_slo_p95_ms`` and ``kv_cache_usage /
    kv_cache_target``, the largest, and requests in its engine's scheduler count as waiting:
    they scale it up alone without a time-to-first-token SLO, with one while ``latency >=
    fill``) and, when ``arrival_rate`` and ``service_time_ms`` are both known, ``need =
    ceil(arrival_rate * service_time_ms / 1000 / target_utilisation)`` (the replicas that
    serve the arrivals at the target utilisation; 0 otherwise). The rules, first match wins:

    1. Bounds: ``cur < min_replicas`` returns ``min_replicas``; ``cur > max_replicas`` returns
       ``max_replicas`` at once (no cooldown, no step limit).
    2. Cold start: from 0 replicas with requests waiting, return
       ``max(1, ceil(ongoing / target_queue_per_replica), need)``, at most ``max_step`` and
       ``max_replicas``, at once, like Ray Serve's cold-start path.
    3. Scale up when requests queue. Without an SLO: ``load > 2``, or ``load > 1`` while
       requests wait for a replica (``queued_requests > WAITING``). With an SLO (p95 or time
       to first token) the SLO is the judge: ``load > 1`` while ``latency >= fill`` (see 4),
       or ``latency > 1`` while requests wait (a p95 over the SLO with nothing waiting is the
       requests' own time, which replicas do not shorten). Also ``need > cur`` while requests
       wait (with an SLO: and ``latency >= fill``) or, in a graph, the callers send over
       ``ANTICIPATION`` times what the node sees yet (a fixed set of clients that wait for
       their answers keeps replicas full without a queue, or with one at any count: more
       would idle). To ``max(ceil(run * p), need, cur + 1)`` with ``run`` the replicas
       serving (the figures are theirs), ``p = latency / fill`` with an SLO, ``max(load,
       latency)`` without, at most ``cur + max_step`` and ``max_replicas``. Held at ``cur``
       while less than ``upscale_cooldown_s`` has passed since the last change (up or down),
       while replicas still starting cover ``max(ceil(run * p), need)``
       (``hold:starting``), or at ``max_replicas``. With a p95 SLO, while the wait for a
       replica is under ``1 - fill`` of it (a known one), the reading must have pressed for
       ``CONFIRM_S`` (``hold:confirming``): one short window's p95 is noisy.
    4. Scale down only when the node is *comfortable*: each reading's ``load`` under
       ``fill`` (with an SLO: under 1, the SLO judges), ``latency`` under
       ``downscale_headroom`` unless nothing waits and the SLO is met, an LLM engine's ratio
       under it always; for ``downscale_cooldown_s`` without a break (``comfortable_since_s``;
       the readings are kept in ``calm``, :class:`~autoscale.calm.Calm`), with their mean
       load under ``downscale_headroom`` (with an SLO: ``fill``; else ``hold:busy``) and the
       arrival rate not up by ``RISING`` since (else ``hold:rising``). A reading that is not
       comfortable resets that timer, and so does every change of replica count, so each
       step down needs a full cooldown. With ``fill = (1 + downscale_headroom) / 2``, the
       step goes to ``max(ceil(cur * pressure / fill), floor)`` replicas, removing at most
       ``max_step``, never below ``min_replicas``. ``pressure``: ``max(load, latency)``
       while requests wait, else the recent load (weighted by age,
       :data:`~autoscale.calm.RECENT_S`), 0 while idle (nothing in flight or arriving).
       ``floor`` keeps capacity for the arrivals, which queue length alone cannot show
       while replicas keep up: for the period's mean rate or the rate now, the larger,
       unless the rate fell under ``FALLING`` of the mean (then the rate now); with an SLO
       ``ceil(a + SAFETY * sqrt(a))`` for ``a`` busy replicas (square-root staffing,
       :func:`~autoscale.capacity.staffing_need`), without ``ceil(a / (target_utilisation
       * fill))``. When that removes nothing and no request waited all through the
       period, the node *probes* one replica fewer (``down:probe``) if that one still holds
       the most requests in flight of the period within target and serves the arrivals at
       full utilisation; a probe undone within ``PROBE_WATCH_S`` is not repeated at that
       count until the rate falls under ``PROBE_RETRY_RATE`` of the rate it failed at.
    5. Otherwise hold at ``cur``.

    The result is always within ``[min_replicas, max_replicas]``.

    Args:
        settings: The node's scaling settings.
        metrics: The node's recent metrics.
        state: The state this function returned last time (``{}`` the first time).
        now: The current time in seconds (any monotonic clock; injected for tests).

    Returns:
        The desired replica count and the new state: a JSON-serialisable dict with
        ``last_change_s``, ``comfortable_since_s``, ``reason`` (e.g. ``"up:load"``,
        ``"hold:upscale_cooldown"``, ``"down"``, ``"down:probe"``) and, as they apply,
        ``calm``, ``quiet``, ``pressed_since_s``, ``probe`` and ``probe_failed``, to pass
        back on the next call.
    """
    p = propose(settings, metrics, state, now, metrics.arrival_rate)
    return p.desired, commit_state(p, metrics.current_replicas, p.desired, state, now, p.reason)
