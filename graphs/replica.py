"""How a graph runs on Ray Serve: the hop between nodes and the deployment every node runs in.

:class:`HandleRunner` calls chains of nodes through deployment handles (the ChainRunner routers
and ensembles are given); :class:`NodeCore` is one node's behaviour by kind with its stats;
:class:`NodeReplica` is the deployment class of a node with a deployment of its own, which also
hosts the nodes fused into it (:class:`FusedNode`, called in-process through the same calls a
handle takes; see :mod:`graphs.placement`)."""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from ray import serve

from autoscale.stats import ReplicaStats
from graphs.defaults import max_ongoing
from graphs.guards import call_guard
from graphs.logs import install_logging
from graphs.metrics import NodeMetrics, outcome_of, queued_in
from graphs.spec import EnsembleNode, ModelNode, PreprocessNode, RouterNode
from graphs.tracing import traced, traced_stream
from nodes.calls import Payload, Result, merge_notes, meta_item, public_error
from nodes.ensemble import Ensemble
from nodes.llm import LLMRunner
from nodes.model import ModelRunner
from nodes.preprocess import Preprocessor
from nodes.resilience import CallGuard, CallSettings, check_deadline
from routing.router import Router, RouterMetrics

#: Serve's replica logger: its handlers add the replica and the request id to each line.
serve_logger = logging.getLogger("ray.serve")
#: Access-log lines go to the replica's log file only, and not when the deployment's
#: ``logging_config`` turns access logs off (Serve's own filters read these attributes).
ACCESS_LOG = {"log_to_stderr": False, "serve_access_log": True}


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
    ``remote`` / ``options(stream=True, method_name="stream")`` calls), by node name, each
    call under its node's deadline, retries and breaker (:class:`~nodes.resilience.CallGuard`).
    """

    def __init__(self, handles: Mapping[str, Any], guard: CallGuard | None = None):
        self.handles, self.guard = handles, guard or CallGuard()

    async def call(self, chain: Sequence[str], payload: Payload, ctx: dict[str, Any]) -> Result:
        """Call ``chain`` in turn, each output feeding the next node."""
        served: list[str] = []
        notes: dict[str, Any] = {}
        for name in chain:
            payload, by, more = await self.guard.call(
                name, _caller(self.handles[name], payload), ctx
            )
            served.extend(by)
            if more:
                merge_notes(notes, more)
        return payload, served, notes

    async def stream(
        self, chain: Sequence[str], payload: Payload, ctx: dict[str, Any]
    ) -> AsyncIterator[Payload]:
        """Stream a chain: every node but the last runs as usual, the last one's ``stream`` is
        passed through item by item (metadata items included). A consumer that stops early (the
        HTTP client went away) cancels the streamed call, down to the LLM engine."""
        payload, served, notes = await self.call(chain[:-1], payload, ctx)
        if served or notes:
            yield meta_item(served, notes)
        handle = self.handles[chain[-1]]

        def open_stream(c: dict[str, Any]) -> Any:
            return handle.options(stream=True, method_name="stream").remote(payload, c)

        async for item in self.guard.stream(chain[-1], open_stream, ctx):
            yield item


def _caller(handle: Any, payload: Payload) -> Callable[[dict[str, Any]], Awaitable[Result]]:
    """The call of ``handle`` with ``payload``, given the context (a retry makes it again)."""
    return lambda ctx: handle.remote(payload, ctx)


class NodeCore:
    """One node's behaviour by kind, with its stats and the calls its deployment handle takes:
    in a deployment of its own (:class:`NodeReplica`) or fused into another deployment's
    replica (as a :class:`FusedNode`).

    Args:
        spec: the node.
        runner: how the node calls the nodes it calls (routers, ensembles).
        graph: the graph's name (the ``graph`` label of the node's metrics).
    """

    def __init__(self, spec: Any, runner: HandleRunner, graph: str = ""):
        self.name = spec.name
        self._runner = runner
        self._stats = ReplicaStats(max_concurrency=max_ongoing(spec))
        self.metrics = NodeMetrics(graph, spec.name)
        impl: Any
        if isinstance(spec, PreprocessNode):
            impl = Preprocessor(spec)
        elif isinstance(spec, ModelNode) and spec.runtime == "vllm":
            impl = LLMRunner(spec, on_generation=self.metrics.generation)
        elif isinstance(spec, ModelNode):
            impl = ModelRunner(spec, on_batch=self._batch)
        elif isinstance(spec, RouterNode):
            impl = Router(spec, runner, metrics=RouterMetrics(spec.name, graph))
        elif isinstance(spec, EnsembleNode):
            impl = Ensemble(spec, runner)
        else:  # the spec's discriminated union makes this unreachable for parsed graphs
            raise TypeError(f"unknown node kind {type(spec).__name__}")
        self._impl = impl

    def _batch(self, size: int, max_size: int) -> None:
        self._stats.batch(size, max_size)
        self.metrics.batch(size)

    def _started(self, ctx: dict[str, Any]) -> float:
        try:  # work past its deadline is never started, but counted (a timeout)
            check_deadline(ctx, self.name, time.time())
        except Exception as exc:
            self.metrics.refused(outcome_of(exc))
            raise
        self.metrics.started(queued_in(self._impl))
        return self._stats.started()

    def _finished(self, start: float, exc: BaseException | None) -> None:
        self._stats.finished(start)  # start: time.monotonic(), ReplicaStats' clock
        self.metrics.finished(outcome_of(exc), time.monotonic() - start, queued_in(self._impl))

    @traced  # a span per call (child of ctx's traceparent); the request in its logs' scope
    async def __call__(self, payload: Payload, ctx: dict[str, Any]) -> Result:
        start = self._started(ctx)
        failure: BaseException | None = None
        try:
            out, served, notes = await self._impl(payload, ctx)
        except Exception as exc:
            self._stats.failed()  # the node's error rate (GET /<graph>/live)
            failure = public_error(exc, self.name, ctx.get("request_id"))
            raise failure from None
        except BaseException as exc:  # cancelled: the caller went away
            failure = exc
            raise
        finally:
            self._finished(start, failure)
        return out, [self.name, *served], notes

    @traced_stream
    async def stream(self, payload: Payload, ctx: dict[str, Any]) -> AsyncIterator[Payload]:
        """Stream this node's output (see :mod:`nodes.calls`): a node without a ``stream`` of
        its own yields its whole result as one chunk."""
        start = self._started(ctx)
        failure: BaseException | None = None
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
            failure = public_error(exc, self.name, ctx.get("request_id"))
            raise failure from None
        except BaseException as exc:  # cancelled or closed early: the caller went away
            failure = exc
            raise
        finally:
            self._finished(start, failure)

    def record_autoscaling_stats(self) -> dict[str, float]:
        """p95 latency, arrival rate, service time, queue length, batch fill and an LLM
        engine's own signals, for the autoscaling policies (``autoscale.stats`` names them)."""
        return {**self._stats.snapshot(), **getattr(self._impl, "autoscaling_stats", dict)()}

    def stats(self) -> dict[str, Any]:
        """Node statistics (batch sizes for batched model nodes)."""
        return self._impl.stats() if hasattr(self._impl, "stats") else {}

    def resilience(self) -> dict[str, Any]:
        """This node's breakers and fallback (routers per arm, ensembles per member), and the
        breakers and retries of the calls its replica makes, for ``GET /<graph>/graph``."""
        guard = getattr(self._impl, "guard", None)  # a router's ArmGuard
        own = guard.state() if guard is not None else {}
        states = getattr(self._impl, "breaker_states", None)  # an ensemble's
        if states is not None:
            own = states()
        calls = self._runner.guard.state()
        return {**own, **({"calls": calls} if calls else {})}

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


class FusedNode:
    """A node fused into another deployment's replica, behind the calls a deployment handle
    takes: ``remote(payload, ctx)``, ``options(stream=True, method_name="stream")`` and
    ``<method>.remote(...)``. A call is a plain ``await`` in the host's event loop (model code
    runs in a worker thread, as in a deployment of its own): no handle, no serialisation.

    Its metrics are its :class:`NodeCore`'s, as in a deployment of its own
    (:mod:`graphs.metrics`); each call also writes an access-log line.
    """

    def __init__(self, core: NodeCore, host: str):
        self.core, self.host = core, host

    def options(self, *, stream: bool = False, method_name: str = "__call__", **_: Any) -> Any:
        if stream:
            return _LocalStream(self, method_name)
        return self if method_name == "__call__" else getattr(self, method_name)

    async def remote(self, payload: Payload, ctx: dict[str, Any]) -> Result:
        start = time.perf_counter()
        outcome = "error"
        try:
            result = await self.core(payload, dict(ctx))
            outcome = "ok"
            return result
        finally:
            self._observe(outcome, start, "__call__")

    def _observe(self, outcome: str, start: float, method: str) -> None:
        """An access-log line like the one Serve writes for a handle call to a deployment
        (``CALL <node>.<method> OK 1.2ms``, with the request id)."""
        ms = (time.perf_counter() - start) * 1000.0
        status = "OK" if outcome == "ok" else "ERROR"
        serve_logger.info(f"CALL {self.core.name}.{method} {status} {ms:.1f}ms", extra=ACCESS_LOG)

    async def call(self, method: str, *args: Any) -> Any:
        """``method`` of the node with ``args`` (sync or async methods alike)."""
        if method == "__call__":
            return await self.remote(*args)
        out = getattr(self.core, method)(*args)
        return await out if inspect.isawaitable(out) else out

    def __getattr__(self, method: str) -> _LocalMethod:
        if method.startswith("_"):
            raise AttributeError(method)
        return _LocalMethod(self, method)


class _LocalMethod:
    def __init__(self, node: FusedNode, method: str):
        self._node, self._method = node, method

    def remote(self, *args: Any) -> Awaitable[Any]:
        return self._node.call(self._method, *args)


class _LocalStream:
    """A fused node's stream, closable early like a streamed Serve response."""

    def __init__(self, node: FusedNode, method: str):
        self._node, self._method, self._done = node, method, False

    def remote(self, payload: Payload, ctx: dict[str, Any]) -> _LocalStream:
        self._items = getattr(self._node.core, self._method)(payload, dict(ctx))
        self._start = time.perf_counter()
        return self

    async def __aiter__(self) -> AsyncIterator[Payload]:
        try:
            async for item in self._items:
                yield item
        except Exception:
            self._finish("error")
            raise
        self._finish("ok")

    async def aclose(self) -> None:
        """Stop early (the consumer went away): closes the node's stream, down to the engine."""
        await self._items.aclose()
        self._finish("ok")

    def _finish(self, outcome: str) -> None:
        if not self._done:
            self._done = True
            self._node._observe(outcome, self._start, self._method)


class HostedNode:
    """A node fused into a deployment other than the caller's: the ingress reaches its methods
    (router state, rewards, reports, operator actions) through the host's ``hosted`` call."""

    def __init__(self, host: Any, node: str):
        self._host, self._node = host, node

    def remote(self, payload: Payload, ctx: dict[str, Any]) -> Any:
        return self._host.hosted.remote(self._node, "__call__", payload, ctx)

    def __getattr__(self, method: str) -> _HostedMethod:
        if method.startswith("_"):
            raise AttributeError(method)
        return _HostedMethod(self._host, self._node, method)


class _HostedMethod:
    def __init__(self, host: Any, node: str, method: str):
        self._host, self._node, self._method = host, node, method

    def remote(self, *args: Any) -> Any:
        return self._host.hosted.remote(self._node, self._method, *args)


def fuse_nodes(
    specs: Sequence[Any], table: dict[str, Any], host: str, guard: CallGuard, graph: str = ""
) -> dict[str, FusedNode]:
    """Build the nodes fused into deployment ``host`` of graph ``graph`` and add them to
    ``table`` (the handles their callers use, by node name), which every fused node's runner
    shares, as it shares the host replica's ``guard`` (deadlines, retries, breakers)."""
    fused = {
        spec.name: FusedNode(NodeCore(spec, HandleRunner(table, guard), graph), host)
        for spec in specs
    }
    table.update(fused)
    return fused


@serve.deployment
class NodeReplica(NodeCore):
    """One replica of a node with a deployment of its own (named after the node), and of the
    nodes fused into it (see :mod:`graphs.placement`).

    Every node, fused or not, reports ``servegraph_node_*`` (:mod:`graphs.metrics`); Ray
    Serve's own deployment metrics (``ray_serve_deployment_*``) cover the deployment.

    Args:
        spec: the node.
        handles: deployment handles of the nodes it (or a node fused into it) calls, by name.
        hosted: the specs of the nodes fused into this deployment.
        settings: how the nodes it calls are called (timeouts, retries, breakers), by name.
        graph: the graph's name (the ``graph`` label of the nodes' metrics).
    """

    def __init__(
        self,
        spec: Any,
        handles: Mapping[str, Any],
        hosted: Sequence[Any] = (),
        settings: Mapping[str, CallSettings] | None = None,
        graph: str = "",
    ):
        install_logging()  # this replica's servegraph log lines, with the request in scope
        table = fast_handles(handles)
        guard = call_guard(settings or {}, spec.name)
        self._hosted = fuse_nodes(hosted, table, spec.name, guard, graph)
        super().__init__(spec, HandleRunner(table, guard), graph)

    async def hosted(self, node: str, method: str, *args: Any) -> Any:
        """Call ``method`` of the fused node ``node`` (the ingress reaching a router fused here:
        its state, rewards, reports and operator actions)."""
        return await self._hosted[node].call(method, *args)
