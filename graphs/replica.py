"""How a graph runs on Ray Serve: the hop between nodes and the deployment every node runs in.

:class:`HandleRunner` calls a chain of nodes through their deployment handles (the
:class:`~nodes.calls.ChainRunner` routers and ensembles are given); :class:`NodeReplica` is the
deployment class, which builds the node's behaviour by kind and reports its stats.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from ray import serve

from autoscale.stats import ReplicaStats
from graphs.spec import EnsembleNode, ModelNode, PreprocessNode, RouterNode
from nodes.calls import Payload, Result, merge_notes, meta_item, public_error
from nodes.ensemble import Ensemble
from nodes.llm import LLMRunner
from nodes.model import ModelRunner
from nodes.preprocess import Preprocessor
from routing.router import Router, RouterMetrics


def fast_handles(handles: Mapping[str, Any]) -> dict[str, Any]:
    """Handles on Ray Serve's gRPC transport unless ``SERVEGRAPH_HANDLE_TRANSPORT=ray``.

    Passing payloads by value over gRPC skips the object store round trip that by-reference
    calls pay on every hop; README's "Why these defaults" has the figures.
    """
    if os.environ.get("SERVEGRAPH_HANDLE_TRANSPORT", "grpc") == "ray":
        return dict(handles)
    return {name: h.options(_by_reference=False) for name, h in handles.items()}


class HandleRunner:
    """Calls chains of nodes through Ray Serve deployment handles (or anything with the same
    ``remote`` / ``options(stream=True, method_name="stream")`` calls), by node name."""

    def __init__(self, handles: Mapping[str, Any]):
        self.handles = handles

    async def call(self, chain: Sequence[str], payload: Payload, ctx: dict[str, Any]) -> Result:
        """Call ``chain`` in turn, each output feeding the next node."""
        served: list[str] = []
        notes: dict[str, Any] = {}
        for name in chain:
            payload, by, more = await self.handles[name].remote(payload, ctx)
            served.extend(by)
            if more:
                merge_notes(notes, more)
        return payload, served, notes

    async def stream(
        self, chain: Sequence[str], payload: Payload, ctx: dict[str, Any]
    ) -> AsyncIterator[Payload]:
        """Stream a chain: every node but the last runs as usual, the last one's ``stream`` is
        passed through item by item (metadata items included)."""
        payload, served, notes = await self.call(chain[:-1], payload, ctx)
        if served or notes:
            yield meta_item(served, notes)
        last = self.handles[chain[-1]].options(stream=True, method_name="stream")
        response = last.remote(payload, ctx)
        finished = False
        try:
            async for item in response:
                yield item
            finished = True
        finally:
            if not finished:
                # The consumer stopped early (the HTTP client went away, or failed): cancel the
                # streamed call, which cancels the calls it made, down to the LLM engine.
                response.cancel()


@serve.deployment
class NodeReplica:
    """One replica of one graph node; its deployment is named after the node.

    Per-node request counts, errors, latency and batch sizes come from Ray Serve's own
    deployment metrics (``ray_serve_deployment_*``, ``ray_serve_batch_*``), tagged with the
    node's name as ``deployment`` and the graph's as ``application``.
    """

    def __init__(self, spec: Any, handles: Mapping[str, Any]):
        self.name = spec.name
        self._stats = ReplicaStats()
        runner = HandleRunner(fast_handles(handles))
        impl: Any
        if isinstance(spec, PreprocessNode):
            impl = Preprocessor(spec)
        elif isinstance(spec, ModelNode) and spec.runtime == "vllm":
            impl = LLMRunner(spec)
        elif isinstance(spec, ModelNode):
            impl = ModelRunner(spec, on_batch=self._stats.batch)
        elif isinstance(spec, RouterNode):
            impl = Router(spec, runner, metrics=RouterMetrics(spec.name))
        elif isinstance(spec, EnsembleNode):
            impl = Ensemble(spec, runner)
        else:  # the spec's discriminated union makes this unreachable for parsed graphs
            raise TypeError(f"unknown node kind {type(spec).__name__}")
        self._impl = impl

    async def __call__(self, payload: Payload, ctx: dict[str, Any]) -> Result:
        start = self._stats.started()
        try:
            out, served, notes = await self._impl(payload, ctx)
        except Exception as exc:
            raise public_error(exc, self.name, ctx.get("request_id")) from None
        finally:
            self._stats.finished(start)
        return out, [self.name, *served], notes

    async def stream(self, payload: Payload, ctx: dict[str, Any]) -> AsyncIterator[Payload]:
        """Stream this node's output (see :mod:`nodes.calls`): a node without a ``stream`` of
        its own yields its whole result as one chunk."""
        start = self._stats.started()
        try:
            yield meta_item([self.name], {})
            impl_stream = getattr(self._impl, "stream", None)
            if impl_stream is None:
                out, served, notes = await self._impl(payload, ctx)
                if served or notes:
                    yield meta_item(served, notes)
                yield out
                return
            async for item in impl_stream(payload, ctx):
                yield item
        except Exception as exc:
            raise public_error(exc, self.name, ctx.get("request_id")) from None
        finally:
            self._stats.finished(start)

    def record_autoscaling_stats(self) -> dict[str, float]:
        """p95 latency, arrival rate, service time, queue length and batch fill, for the
        autoscaling policies (``autoscale.stats`` names them)."""
        return self._stats.snapshot()

    def stats(self) -> dict[str, Any]:
        """Node statistics (batch sizes for batched model nodes)."""
        stats = getattr(self._impl, "stats", None)
        return stats() if stats else {}

    async def state(self) -> dict[str, Any]:
        """Live routing state (router nodes), for ``GET /<graph>/graph``."""
        state = getattr(self._impl, "state", None)
        return await state() if state else {}

    # --- router nodes: rewards, operator actions, reports, Serve user_config ------------------

    def _router(self) -> Router:
        if not isinstance(self._impl, Router):
            raise TypeError(f"node {self.name!r} is not a router")
        return self._impl

    async def feedback(
        self, claims: dict[str, Any], decisions: list[list[Any]], reward: float
    ) -> dict[str, Any]:
        """Apply a reward to this router's decisions (see :meth:`Router.feedback`)."""
        return await self._router().feedback(claims, decisions, reward)

    async def control(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """An operator action on this router (see :meth:`Router.control`)."""
        return await self._router().control(action, body)

    async def experiments(self) -> dict[str, Any]:
        """This router's experiment report."""
        return await self._router().experiments()

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve ``user_config`` (router nodes: ``{"weights": [...]}``)."""
        if not isinstance(self._impl, Router):
            raise ValueError(f"node {self.name!r} takes no user_config (only router nodes do)")
        await self._impl.reconfigure(user_config)
