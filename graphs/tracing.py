"""A request's trace and log scope through every hop of a graph.

- :class:`TraceContext` (the ingress's outermost ASGI layer) reads the W3C ``traceparent`` of
  every HTTP request (a malformed one is ignored and a new trace starts), opens the request's
  span, puts the request in scope for the logs (:mod:`graphs.logs`) and returns ``traceparent``
  (same trace, the ingress's span) on every response, errors included.
- :func:`traced` and :func:`traced_stream` wrap a node's calls, in a deployment of its own or
  fused: the call is a span, child of the caller's (``ctx["traceparent"]``), named after the
  node, and the callee's ``ctx["traceparent"]`` names it in turn.

Spans are OpenTelemetry spans when :mod:`graphs.otel` is on (attributes ``servegraph.graph``,
``.node``, ``.deployment``, ``.arm`` for routers, ``.outcome``); else only their ids travel.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

from graphs import otel
from graphs.logs import RequestScope, current_scope, enter_scope, exit_scope, process_info
from graphs.traceparent import TRACEPARENT, TraceParent, parse_traceparent
from routing.router import Router

__all__ = ["Span", "TraceContext", "current_traceparent", "traced", "traced_stream"]

log = logging.getLogger("servegraph")

C = TypeVar("C", bound=Callable[..., Awaitable[Any]])
S = TypeVar("S", bound=Callable[..., AsyncIterator[Any]])


class Span:
    """One span of a request: its trace context, and the OpenTelemetry span when spans are on.

    Args:
        name: the span's name (a node's name; ``POST /predict`` at the ingress).
        parent: the caller's span (None: a new trace).
        scope: the request in scope while the span is active (its ``trace`` is set here).
        attributes: OpenTelemetry attributes.
        server: the span of an incoming HTTP request.
    """

    def __init__(
        self,
        name: str,
        parent: TraceParent | None,
        scope: RequestScope,
        attributes: Mapping[str, Any],
        server: bool = False,
    ):
        self._otel: Any = None
        if otel.tracer() is not None:
            self._otel, self.trace = otel.start_span(name, parent, attributes, server)
        else:
            self.trace = parent.child() if parent is not None else TraceParent.start()
        self.scope = RequestScope(scope.request_id, scope.graph, scope.node, self.trace)
        self.attributes: dict[str, Any] = {}
        self.error: BaseException | None = None
        self._start = time.perf_counter()

    def active(self) -> Span:
        """``with span.active():`` the span's request in scope (logs) and its OpenTelemetry
        span current, for the block (not re-entrant: one block at a time)."""
        return self

    def __enter__(self) -> None:
        self._tokens = (
            enter_scope(self.scope),
            otel.attach(self._otel) if self._otel is not None else None,
        )

    def __exit__(self, *exc: object) -> None:
        scope, span = self._tokens
        if span is not None:
            otel.detach(span)
        exit_scope(scope)

    def end(self, outcome: str) -> float:
        """End the span with ``outcome`` (``ok``, ``error``, ``cancelled``); its milliseconds."""
        if self._otel is not None:
            attributes = {**self.attributes, "servegraph.outcome": outcome}
            if self.error is not None:
                attributes["error.type"] = type(self.error).__name__
            otel.end_span(self._otel, attributes, self.error)
        return (time.perf_counter() - self._start) * 1000.0


def current_traceparent() -> str:
    """The ``traceparent`` of the span in scope (the callees' parent); outside any (a graph run
    without :class:`TraceContext`), a new trace's, so that every node of the run shares it."""
    scope = current_scope()
    trace = scope.trace if scope is not None and scope.trace is not None else TraceParent.start()
    return trace.header()


def _node_span(core: Any, ctx: Mapping[str, Any]) -> Span:
    where = process_info()
    graph = ctx.get("graph") or where.app
    attributes: dict[str, Any] = {}
    if otel.tracer() is not None:  # on the hot path only when spans are exported
        attributes = {
            "servegraph.graph": graph,
            "servegraph.node": core.name,
            "servegraph.deployment": where.deployment,
            "servegraph.request_id": ctx.get("request_id"),
            "servegraph.shadow": True if ctx.get("shadow") else None,
        }
        attributes = {k: v for k, v in attributes.items() if v is not None}
    return Span(
        core.name,
        parse_traceparent(ctx.get(TRACEPARENT)),
        RequestScope(ctx.get("request_id"), graph, core.name),
        attributes,
    )


def _outcome(exc: BaseException, span: Span) -> str:
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return "cancelled"
    span.error = exc
    return "error"


def traced(call: C) -> C:
    """Wrap a node's ``__call__(payload, ctx)`` (a :class:`~graphs.replica.NodeCore`'s): a span
    per call, the request in scope for its logs, a DEBUG line with its outcome and time."""

    @functools.wraps(call)
    async def hop(core: Any, payload: Any, ctx: dict[str, Any]) -> Any:
        span = _node_span(core, ctx)
        outcome = "ok"
        with span.active():
            try:
                result = await call(core, payload, {**ctx, TRACEPARENT: span.trace.header()})
                served = result[1]
                if isinstance(getattr(core, "_impl", None), Router) and len(served) > 1:
                    span.attributes["servegraph.arm"] = served[1]  # the chosen arm's first node
                return result
            except BaseException as exc:
                outcome = _outcome(exc, span)
                raise
            finally:
                ms = span.end(outcome)
                log.debug("node %s: %s in %.1f ms", core.name, outcome, ms)

    return cast(C, hop)


def traced_stream(stream: S) -> S:
    """Wrap a node's ``stream(payload, ctx)``: as :func:`traced`, the span lasting until the last
    item (or until the consumer closes the stream)."""

    @functools.wraps(stream)
    async def hop(core: Any, payload: Any, ctx: dict[str, Any]) -> AsyncIterator[Any]:
        span = _node_span(core, ctx)
        child = {**ctx, TRACEPARENT: span.trace.header()}
        items = cast(AsyncGenerator[Any, None], stream(core, payload, child))
        outcome = "ok"
        try:
            while True:
                with span.active():  # per step: the consumer may move between tasks
                    try:
                        item = await items.__anext__()
                    except StopAsyncIteration:
                        break
                yield item
        except BaseException as exc:
            outcome = _outcome(exc, span)
            raise
        finally:
            with span.active():
                await items.aclose()  # closes the node's stream, down to the engine
                ms = span.end(outcome)
                log.debug("node %s: stream %s in %.1f ms", core.name, outcome, ms)

    return cast(S, hop)


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]


class TraceContext:
    """The ingress's outermost ASGI layer: W3C trace context in and out of every HTTP route,
    and the request in scope (request id, graph, trace) for every log line it causes.

    Args:
        inner: the app.
        graph: the graph's name.
        request_id: the id of the request being handled (Serve's, also its ``X-Request-Id``).
    """

    def __init__(
        self,
        inner: Callable[[Scope, Receive, Send], Awaitable[None]],
        graph: str,
        request_id: Callable[[], str | None],
    ):
        self.inner = inner
        self.graph = graph
        self.request_id = request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        parent = None
        for key, value in scope.get("headers", ()):
            if key == b"traceparent":
                parent = parse_traceparent(value)
                break
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        route = path[len(root) :] if root and path.startswith(root) else path
        method = scope.get("method", "GET")
        try:
            request_id = self.request_id()
        except Exception:
            request_id = None
        attributes = {
            "servegraph.graph": self.graph,
            "servegraph.deployment": process_info().deployment,
            "servegraph.request_id": request_id,
            "http.request.method": method,
            "url.path": path,
        }
        span = Span(
            f"{method} {route or '/'}",
            parent,
            RequestScope(request_id, self.graph),
            {k: v for k, v in attributes.items() if v is not None},
            server=True,
        )
        header = (b"traceparent", span.trace.header().encode())
        status = 500

        async def traced_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        outcome = "ok"
        with span.active():
            try:
                await self.inner(scope, receive, traced_send)
            except BaseException as exc:
                outcome = _outcome(exc, span)
                raise
            finally:
                span.attributes["http.response.status_code"] = status
                if status >= 500 and outcome == "ok":
                    outcome = "error"
                ms = span.end(outcome)
                log.debug("%s %s: %d in %.1f ms", method, path, status, ms)
