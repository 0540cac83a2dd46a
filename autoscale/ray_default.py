"""Ray Serve 2.60's default autoscaling policy, re-implemented to compare ours with it.

:func:`ray_default_policy` is ``replica_queue_length_autoscaling_policy`` with the delays,
scaling factors and bounds the controller wraps around it (a unit test checks it decision by
decision against Ray's own code).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Ray Serve 2.60: ray.serve._private.constants / ray.serve.autoscaling_policy.
_RAY_COUNTER_KEY = "__decision_counters"
_RAY_TIMESTAMP_KEY = "__decision_timestamp"
_RAY_EPS_S = 1e-6


@dataclass(frozen=True)
class RayDefaultConfig:
    """Ray Serve 2.60's ``AutoscalingConfig`` defaults that its default policy reads."""

    target_ongoing_requests: float = 2.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    downscale_to_zero_delay_s: float | None = None
    upscaling_factor: float = 1.0
    downscaling_factor: float = 1.0
    look_back_period_s: float = 30.0
    metrics_interval_s: float = 10.0
    record_interval_factor: float = 0.2
    min_replicas: int = 1
    max_replicas: int = 10

    @property
    def record_interval_s(self) -> float:
        """How often replicas and handles sample ongoing requests."""
        return min(self.look_back_period_s * self.record_interval_factor, self.metrics_interval_s)


def ray_default_policy(
    config: RayDefaultConfig,
    total_num_requests: float,
    current_num_replicas: int,
    target_num_replicas: int,
    state: Mapping[str, Any],
    now: float,
) -> tuple[int, dict[str, Any]]:
    """Ray Serve 2.60's default decision, as the controller applies it, without Ray.

    ``replica_queue_length_autoscaling_policy`` wants ``total_num_requests /
    target_ongoing_requests`` replicas; ``_apply_scaling_factors`` moves
    ``current_num_replicas`` towards it by the up/downscaling factor (rounded up; at least
    one less when stuck while scaling down); ``_apply_delay_logic`` adopts it only after the
    same direction was wanted for ``upscale_delay_s`` / ``downscale_delay_s`` of wall time
    (any other direction resets the timer); the controller then clips to the bounds.

    Args:
        config: The autoscaling config.
        total_num_requests: Look-back averaged running + queued requests.
        current_num_replicas: Running replicas.
        target_num_replicas: The current target.
        state: The state returned last time (``{}`` first).
        now: Current time (s).

    Returns:
        The new target and state.
    """
    state = dict(state)
    lo, hi = config.min_replicas, config.max_replicas
    cur = current_num_replicas
    if cur == 0:
        # Cold start: straight to at least one replica, or keep the target; no delay.
        if total_num_requests > 0:
            cold = max(math.ceil(config.upscaling_factor), target_num_replicas)
            return min(max(cold, lo), hi), state
        desired = math.ceil(target_num_replicas)
        if desired > 0:
            return min(max(desired, lo), hi), state
    else:
        # Same float expression as Ray, so ceil() rounds the same way.
        raw = cur * (total_num_requests / (config.target_ongoing_requests * cur))
        delta = raw - cur
        factor = config.upscaling_factor if delta > 0 else config.downscaling_factor
        desired = math.ceil(cur + factor * delta)
        if math.ceil(raw) < cur and desired == cur:
            desired -= 1
    desired = max(0, desired)

    decision = target_num_replicas
    counter = state.get(_RAY_COUNTER_KEY, 0)
    stamp = state.get(_RAY_TIMESTAMP_KEY)
    if desired > target_num_replicas:
        if counter < 0:
            counter, stamp = 0, None
        counter += 1
        stamp = now if stamp is None else stamp
        if now - stamp + _RAY_EPS_S >= config.upscale_delay_s:
            counter, stamp, decision = 0, None, desired
    elif desired < target_num_replicas:
        if counter > 0:
            counter, stamp = 0, None
        counter -= 1
        delay = config.downscale_delay_s
        if target_num_replicas == 1 and config.downscale_to_zero_delay_s is not None:
            delay = config.downscale_to_zero_delay_s
        if target_num_replicas != 1:
            desired = max(1, desired)
        stamp = now if stamp is None else stamp
        if now - stamp + _RAY_EPS_S >= delay:
            counter, stamp, decision = 0, None, desired
    else:
        counter, stamp = 0, None
    state[_RAY_COUNTER_KEY], state[_RAY_TIMESTAMP_KEY] = counter, stamp
    return min(max(decision, lo), hi), state
