"""How many replicas a node's arrivals need, and how long requests wait for one.

Pure functions of :class:`~autoscale.metrics.NodeMetrics` figures, shared by the node policy
(:mod:`autoscale.policy`) and the graph policy.
"""

from __future__ import annotations

import math

from autoscale.metrics import NodeMetrics
from autoscale.settings import ScalingSettings

__all__ = [
    "SAFETY",
    "capacity_need",
    "engine_ratio",
    "pressure_ratios",
    "queue_wait_ms",
    "serving_replicas",
    "staffing_need",
]

#: Spare replicas a node scaled down under an SLO keeps, in square roots of its busy replicas
#: (:func:`staffing_need`).
SAFETY = 1.0


def queue_wait_ms(m: NodeMetrics) -> float:
    """Time a request waits for a replica before the replica's own latency starts (ms).

    The replicas' p95 does not see it: requests queue in their callers. By Little's law the
    queue drains at ``running_replicas / service_time`` a second (the arrival rate without a
    service time); 0 with nothing queued or neither known.
    """
    if m.queued_requests <= 0:
        return 0.0
    serving = serving_replicas(m)
    if m.service_time_ms and serving > 0:
        return m.queued_requests * m.service_time_ms / serving
    if m.arrival_rate:
        return m.queued_requests / m.arrival_rate * 1000.0
    return 0.0


def serving_replicas(m: NodeMetrics) -> int:
    """Replicas serving now: the ones the metrics come from (not those still starting)."""
    if m.running_replicas is None:
        return m.current_replicas
    return min(m.running_replicas, m.current_replicas)


def capacity_need(rate: float | None, service_time_ms: float | None, utilisation: float) -> int:
    """Replicas that serve ``rate`` req/s of ``service_time_ms`` each at ``utilisation``.

    ``ceil(rate * service_time_ms / 1000 / utilisation)``; 0 when either is unknown.
    """
    if not rate or not service_time_ms:
        return 0
    return math.ceil(rate * service_time_ms / 1000.0 / utilisation - 1e-9)


def staffing_need(rate: float | None, service_time_ms: float | None) -> int:
    """Replicas that keep ``rate`` req/s of ``service_time_ms`` each from waiting long:
    ``ceil(a + SAFETY * sqrt(a))`` with ``a = rate * service_time_ms / 1000`` the replicas
    busy (square-root staffing: a small node needs a larger share of spare replicas than a
    big one for the same wait); 0 when either is unknown."""
    if not rate or not service_time_ms:
        return 0
    busy = rate * service_time_ms / 1000.0
    return math.ceil(busy + SAFETY * math.sqrt(busy) - 1e-9)


def pressure_ratios(settings: ScalingSettings, m: NodeMetrics) -> tuple[float, float]:
    """Load ratio (ongoing per replica / target) and latency ratio (p95 plus the wait for a
    replica, over the SLO; 0 if unknown)."""
    if m.current_replicas == 0:
        load = math.inf if m.ongoing_requests > 0 else 0.0
    else:
        load = m.ongoing_requests / m.current_replicas / settings.target_queue_per_replica
    latency = 0.0
    if settings.slo_p95_ms is not None and m.p95_ms is not None:
        latency = (m.p95_ms + queue_wait_ms(m)) / settings.slo_p95_ms
    return load, latency


def engine_ratio(settings: ScalingSettings, m: NodeMetrics) -> float:
    """An LLM node's engine pressure: KV-cache usage over its target and p95 time to first
    token over its SLO, the larger (0 when the node reports neither)."""
    ratios = [0.0]
    if m.kv_cache_usage is not None:
        ratios.append(m.kv_cache_usage / settings.kv_cache_target)
    if settings.ttft_slo_p95_ms is not None and m.ttft_p95_ms is not None:
        ratios.append(m.ttft_p95_ms / settings.ttft_slo_p95_ms)
    return max(ratios)
