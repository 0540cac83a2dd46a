"""Settings of a graph's ``observe:`` block: drift and quality, and the inference log.

Both run off the hot path: a request only pays a sample decision and a bounded ``put_nowait``.
The statistics are in :mod:`nodes.drift`; the runtime that applies these settings in the ingress
replicas is :mod:`graphs.observe`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from nodes.spec_base import Frozen

__all__ = [
    "DriftSpec",
    "DriftThresholds",
    "InferenceLogSpec",
    "LiveWindow",
    "ObserveSpec",
]


class LiveWindow(Frozen):
    """A reference frozen from live traffic: the first ``window`` sampled requests."""

    window: int = Field(
        ge=10,
        le=100_000,
        description="Sampled requests whose inputs and outputs become the reference, after "
        "which it is frozen and later traffic is compared with it.",
    )


class DriftThresholds(Frozen):
    """Per-feature limits above which a feature counts as drifted (any one of them)."""

    psi: float | None = Field(
        0.2, gt=0, description="Population stability index (0.1 moderate, 0.2 large shift)."
    )
    js: float | None = Field(
        0.2,
        gt=0,
        le=1,
        description="Jensen-Shannon distance (base 2, in [0, 1]). Small windows read high even "
        "without drift (about 0.1 at 500 rows of 10 bins): keep it above that.",
    )
    wasserstein: float | None = Field(
        None,
        gt=0,
        description="1-D Wasserstein distance in the feature's own units (off when omitted).",
    )


class DriftSpec(Frozen):
    """Input and output distributions compared with a reference, per feature."""

    reference: str | LiveWindow = Field(
        description="A training sample shipped with the graph: a .npz (arrays named after the "
        "graph's inputs, or 'x' for a one-input graph; arrays named after outputs are "
        "optional), a .npy (the single input) or a .jsonl (one object of inputs and outputs per "
        "line), relative to the graph file; or {window: N} to freeze the first N sampled "
        "live requests."
    )
    sample_rate: float = Field(
        0.1, gt=0, le=1, description="Share of requests whose inputs and outputs are binned."
    )
    window: int = Field(
        500,
        ge=10,
        le=1_000_000,
        description="Rows each comparison covers: the most recent sampled rows (a request "
        "carrying a batch of n rows adds n).",
    )
    min_samples: int = Field(
        50, ge=1, description="No verdict before the window holds this many rows."
    )
    every_s: float = Field(
        10.0, gt=0, le=3600, description="Seconds between two comparisons (off the hot path)."
    )
    bins: int = Field(
        10,
        ge=2,
        le=100,
        description="Equal-width bins per feature over the reference's range, plus one bin "
        "below and one above it: memory is fixed whatever the traffic.",
    )
    thresholds: DriftThresholds = Field(
        default_factory=lambda: DriftThresholds(),
        description="Per-feature limits; a feature beyond any of them has drifted.",
    )
    min_drifted: int = Field(
        1, ge=1, description="The graph is flagged when at least this many features drifted."
    )
    features: Literal["all"] | int = Field(
        "all",
        description="Features listed per tensor in /graph: all, or the k most drifted "
        "(every feature is compared either way).",
    )
    queue: int = Field(
        1000, ge=1, le=1_000_000, description="Sampled requests waiting to be binned; more drop."
    )

    @field_validator("reference", mode="before")
    @classmethod
    def _reference(cls, value: Any) -> Any:
        # One clear message instead of one per member of the union (a path or {window: N}).
        if isinstance(value, str | LiveWindow):
            return value
        if isinstance(value, dict):
            try:
                return LiveWindow.model_validate(value)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                raise ValueError(f"{where}: {first['msg']}, got {value!r}") from None
        raise ValueError(f"must be a file path or {{window: N}}, got {value!r}")

    @field_validator("features")
    @classmethod
    def _positive_k(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be 'all' or a number of features >= 1, got {value}")
        return value

    @model_validator(mode="after")
    def _enough_window(self) -> DriftSpec:
        if self.min_samples > self.window:
            raise ValueError(
                f"min_samples ({self.min_samples}) must not exceed window ({self.window})"
            )
        return self


class InferenceLogSpec(Frozen):
    """Sampled request/response pairs (and their rewards) as CloudEvents, KServe-logger style."""

    sample_rate: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Share of requests logged; decided by the request id, so a logged request's "
        "feedback is logged too, whichever replica receives it.",
    )
    path: str | None = Field(
        None,
        description="Folder of rotating JSONL files, one per ingress replica (relative to the "
        "graph file's folder, else the cwd).",
    )
    url: str | None = Field(
        None, pattern=r"^https?://", description="HTTP sink the events are POSTed to."
    )
    mode: Literal["structured", "binary"] = Field(
        "structured",
        description="CloudEvents HTTP mode: structured (application/cloudevents+json) or "
        "binary (ce-* headers, the data as the body).",
    )
    max_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Size at which a JSONL file is rotated."
    )
    backups: int = Field(3, ge=0, le=100, description="Rotated JSONL files kept per replica.")
    queue: int = Field(
        1000, ge=1, le=1_000_000, description="Events waiting to be written; more are dropped."
    )
    timeout_s: float = Field(2.0, gt=0, le=60, description="Timeout of one POST to the url.")
    payloads: bool = Field(
        True, description="Log inputs and outputs; false logs ids, arms and latency only."
    )

    @model_validator(mode="after")
    def _one_sink(self) -> InferenceLogSpec:
        if (self.path is None) == (self.url is None):
            raise ValueError(
                "give exactly one sink: path (a folder of JSONL files) or url (an HTTP sink), "
                "e.g. {path: logs/inference}"
            )
        return self


class ObserveSpec(Frozen):
    """What the ingress watches besides serving: drift and live quality, and an inference log."""

    drift: DriftSpec | None = Field(
        None, description="Drift of inputs and outputs against a reference, and reward per arm."
    )
    log: InferenceLogSpec | None = Field(
        None, description="Sampled request/response pairs to JSONL files or an HTTP sink."
    )
