"""What one node's replicas report to the autoscaling policy: :class:`NodeMetrics`."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["NodeMetrics"]


@dataclass(frozen=True)
class NodeMetrics:
    """What one node's replicas reported over the recent window.

    Attributes:
        current_replicas: Replicas the node has or is starting (Ray's ``target_num_replicas``);
            decisions are made relative to this count.
        ongoing_requests: Requests running or queued, summed over replicas (Ray's
            ``total_num_requests``), averaged over a short recent window.
        queued_requests: The part of ``ongoing_requests`` still waiting for a replica.
        p95_ms: p95 latency (ms) of requests that finished in the recent window; None when
            none finished.
        arrival_rate: Requests per second arriving at the node in the recent window.
        service_time_ms: Replica time one request costs (ms) when replicas are full: its
            latency at ``max_ongoing_requests`` at once divided by that number (Little's law,
            :func:`autoscale.stats.service_time_s`).
        engine_waiting: LLM nodes: requests waiting in the engines' schedulers, summed.
        kv_cache_usage: LLM nodes: the fullest engine's KV-cache usage (0..1).
        ttft_p95_ms: LLM nodes: the worst replica's p95 time to first token (ms).
        running_replicas: Replicas serving now (Ray's ``current_num_replicas``), the ones
            the figures above come from; None: all of ``current_replicas``.
    """

    current_replicas: int
    ongoing_requests: float
    queued_requests: float = 0.0
    p95_ms: float | None = None
    arrival_rate: float | None = None
    service_time_ms: float | None = None
    engine_waiting: float | None = None
    kv_cache_usage: float | None = None
    ttft_p95_ms: float | None = None
    running_replicas: int | None = None

    def __post_init__(self) -> None:
        if self.current_replicas < 0:
            raise ValueError(f"current_replicas must be >= 0, got {self.current_replicas}")
        if self.running_replicas is not None and self.running_replicas < 0:
            raise ValueError(f"running_replicas must be >= 0, got {self.running_replicas}")
        for name in ("ongoing_requests", "queued_requests"):
            value = getattr(self, name)
            if value < 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        optional = ("p95_ms", "arrival_rate", "service_time_ms", "engine_waiting")
        for name in (*optional, "kv_cache_usage", "ttft_p95_ms"):
            value = getattr(self, name)
            if value is not None and (value < 0 or not math.isfinite(value)):
                raise ValueError(f"{name} must be None or a finite number >= 0, got {value}")
