"""Per-node autoscaling settings: the knobs :func:`autoscale.policy.decide` reads."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ScalingSettings(BaseModel):
    """How one graph node scales: its latency SLO, load target, bounds and pacing.

    Example:
        >>> ScalingSettings(slo_p95_ms=250, max_replicas=16)
        ScalingSettings(slo_p95_ms=250.0, max_replicas=16)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    slo_p95_ms: float | None = Field(
        None,
        gt=0,
        description="Latency SLO: the p95 of a node's request latency (ms) must stay at or "
        "under this. None scales on queue depth alone.",
    )
    target_queue_per_replica: float = Field(
        2.0,
        gt=0,
        description="Target ongoing requests (running + queued) per replica, like Ray Serve's "
        "target_ongoing_requests.",
    )
    min_replicas: int = Field(1, ge=0, description="Fewest replicas the node ever runs.")
    max_replicas: int = Field(10, ge=1, description="Most replicas the node ever runs.")
    upscale_cooldown_s: float = Field(
        3.0,
        ge=0,
        description="Seconds after any replica-count change before the next scale-up; gives "
        "new replicas time to start before the queue they were added for is judged again.",
    )
    downscale_cooldown_s: float = Field(
        30.0,
        ge=0,
        description="Seconds load and latency must stay comfortably under target (see "
        "downscale_headroom) before one scale-down step; the timer restarts after each change.",
    )
    max_step: int = Field(4, ge=1, description="Most replicas added or removed by one decision.")
    downscale_headroom: float = Field(
        0.6,
        gt=0,
        lt=1,
        description="Scale down only while load per replica and p95 are both below this "
        "fraction of their targets (hysteresis band between scaling down and up).",
    )

    target_utilisation: float = Field(
        0.75,
        gt=0,
        le=1,
        description="Busy share of each replica to plan for when the node is sized from its "
        "arrival rate and service time (replicas >= rate * service time / this).",
    )

    ttft_slo_p95_ms: float | None = Field(
        None,
        gt=0,
        description="LLM nodes: the p95 time to first token (ms) of streamed calls to hold; "
        "over it while requests wait in the engine's scheduler, the node scales up.",
    )
    kv_cache_target: float = Field(
        0.85,
        gt=0,
        le=1,
        description="LLM nodes: the KV-cache usage each engine should stay under; over it "
        "while requests wait in the engine's scheduler, the node scales up.",
    )

    @model_validator(mode="after")
    def _bounds_ordered(self) -> ScalingSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})"
            )
        return self

    def __repr__(self) -> str:
        # Show what the settings were built from, without the defaults.
        fields = self.model_dump(exclude_defaults=True)
        inner = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        return f"{type(self).__name__}({inner})"
