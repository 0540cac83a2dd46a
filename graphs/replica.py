"""The deployment every node runs in: builds the node by kind, records metrics and stats."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from ray import serve
from ray.serve import metrics

from graphs.spec import EnsembleNode, ModelNode, PreprocessNode, RouterNode
from nodes._flow import Payload, Result
from nodes.ensemble import Ensemble
from nodes.model import ModelRunner
from nodes.preprocess import Preprocessor
from routing.router import Router

_LATENCY_BOUNDARIES = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]


def fast_handles(handles: Mapping[str, Any]) -> dict[str, Any]:
    """Handles on Ray Serve's gRPC transport unless ``SERVEGRAPH_HANDLE_TRANSPORT=ray``.

    Passing payloads by value over gRPC skips the object store round trip that by-reference
    calls pay on every hop; README's "Why these defaults" has the figures.
    """
    if os.environ.get("SERVEGRAPH_HANDLE_TRANSPORT", "grpc") == "ray":
        return dict(handles)
    return {name: h.options(_by_reference=False) for name, h in handles.items()}


@serve.deployment
class NodeReplica:
    """One replica of one graph node; its deployment is named after the node."""

    def __init__(self, spec: Any, handles: Mapping[str, Any]):
        self.name = spec.name
        handles = fast_handles(handles)
        impl: Any
        if isinstance(spec, PreprocessNode):
            impl = Preprocessor(spec)
        elif isinstance(spec, ModelNode):
            impl = ModelRunner(spec)
        elif isinstance(spec, RouterNode):
            impl = Router(spec, handles)
        elif isinstance(spec, EnsembleNode):
            impl = Ensemble(spec, handles)
        else:  # the spec's discriminated union makes this unreachable for parsed graphs
            raise TypeError(f"unknown node kind {type(spec).__name__}")
        self._impl = impl
        # Ray Serve tags every metric with application (the graph) and deployment (the node).
        self._requests = metrics.Counter(
            "servegraph_node_requests", "Requests served by a graph node."
        )
        self._errors = metrics.Counter("servegraph_node_errors", "Requests a graph node failed.")
        self._latency = metrics.Histogram(
            "servegraph_node_latency_ms",
            "Time a graph node took, children included (ms).",
            boundaries=_LATENCY_BOUNDARIES,
        )

    async def __call__(self, payload: Payload, ctx: dict[str, Any]) -> Result:
        start = time.perf_counter()
        try:
            out, served, notes = await self._impl(payload, ctx)
        except Exception:
            self._errors.inc()
            raise
        self._requests.inc()
        self._latency.observe((time.perf_counter() - start) * 1000.0)
        return out, [self.name, *served], notes

    def stats(self) -> dict[str, Any]:
        """Node statistics (batch sizes for batched model nodes)."""
        stats = getattr(self._impl, "stats", None)
        return stats() if stats else {}

    def state(self) -> dict[str, Any]:
        """Live routing state (router nodes), for ``GET /<graph>/graph``."""
        state = getattr(self._impl, "state", None)
        return state() if state else {}
