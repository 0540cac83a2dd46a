"""What the HTTP adapters (``/predict``, OIP, OpenAI) run a graph with: :class:`GraphRunner`.

It owns a graph's entry chain, its per-request context and its feedback tokens, and calls the
nodes through :class:`graphs.replica.HandleRunner`. The adapters see only this typed interface,
never the deployment handles.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, TypeVar

from ray import serve

from graphs.guards import call_guard, call_settings
from graphs.logs import install_logging
from graphs.observe import Observer
from graphs.placement import plan_placement
from graphs.replica import HandleRunner, HostedNode, fast_handles, fuse_nodes
from graphs.spec import INGRESS_NAME, GraphSpec, RouterNode, refs
from graphs.traceparent import TRACEPARENT
from graphs.tracing import current_traceparent
from nodes.calls import DECISIONS, Payload, Result, public_error
from nodes.resilience import BUDGET, DEADLINE, STREAM_GAP, RetryBudget
from routing.keys import graph_tokens
from routing.tokens import Decision, FeedbackTokens

T = TypeVar("T")


class GraphRunner:
    """Runs one graph's entry chain for the ingress's HTTP adapters.

    Args:
        spec: the graph.
        handles: deployment handles (or anything with the same calls) of every node with a
            deployment of its own, by name; the nodes fused into the ingress are built here.
    """

    def __init__(self, spec: GraphSpec, handles: Mapping[str, Any]):
        install_logging()  # this replica's servegraph log lines, with the request in scope
        self.spec = spec
        self.entry = refs(spec.entry)
        self.placement = plan_placement(spec)
        table = fast_handles(handles)
        for node, host in self.placement.host.items():
            if host not in (node, INGRESS_NAME):  # fused into another node's deployment
                table[node] = HostedNode(table[host], node)
        self.calls = call_guard(call_settings(spec.nodes), INGRESS_NAME)
        fuse_nodes(
            [spec.node(n) for n in self.placement.hosted_in(INGRESS_NAME)],
            table,
            INGRESS_NAME,
            self.calls,
            spec.name,
        )
        self.handles = table
        self.routers = [n.name for n in spec.nodes if isinstance(n, RouterNode)]
        self._chains = HandleRunner(self.handles, self.calls)
        self._tokens: FeedbackTokens | None = None
        self.observer = Observer(spec) if spec.observe is not None else None

    @staticmethod
    def request_id() -> str:
        """The id Serve gave the request being handled (also its X-Request-Id)."""
        return serve.context._get_serve_request_context().request_id

    def context(
        self, request_id: str, headers: Mapping[str, str] | None = None, stream: bool = False
    ) -> dict[str, Any]:
        """The per-request context every node receives: the request id, the HTTP headers
        (lower-cased names; routers read sticky keys from them), the deadline (the graph's
        ``timeout_s`` from now), the retry budget, the graph's name and the request's span
        (``traceparent``, see :mod:`graphs.tracing`). A streamed request's deadline bounds its
        first item, and ``timeout_s`` each gap between items."""
        ctx = {
            "request_id": request_id,
            "graph": self.spec.name,
            TRACEPARENT: current_traceparent(),
            "headers": {k.lower(): v for k, v in (headers or {}).items()},
            DEADLINE: time.time() + self.spec.timeout_s,
            BUDGET: RetryBudget(self.spec.retry_budget),
        }
        if stream:
            ctx[STREAM_GAP] = self.spec.timeout_s
        return ctx

    async def guard(self, call: Awaitable[T], request_id: str | None = None) -> T:
        """Await a call into the graph, mapping every failure to a JSON error (GraphError)
        that never carries internal exception text (see :func:`nodes.calls.public_error`)."""
        try:
            return await call
        except Exception as exc:  # never a bare traceback
            if request_id is None:  # the log line carries the request id, whatever the route
                try:
                    request_id = self.request_id()
                except Exception:
                    request_id = None
            raise public_error(exc, None, request_id) from None

    async def run(self, payload: Payload, ctx: dict[str, Any]) -> Result:
        """The graph's result for ``payload``: output, nodes that served it, notes."""
        started = time.perf_counter()
        result = await self.guard(self._chains.call(self.entry, payload, ctx), ctx["request_id"])
        if self.observer is not None:  # a sample decision and a put_nowait, nothing more
            elapsed = time.perf_counter() - started
            self.observer.record(ctx["request_id"], payload, result[0], result[1], elapsed)
        return result

    def stream(self, payload: Payload, ctx: dict[str, Any]) -> AsyncIterator[Payload]:
        """The graph's output streamed (LLM graphs); see :meth:`HandleRunner.stream`."""
        return self._chains.stream(self.entry, payload, ctx)

    @property
    def tokens(self) -> FeedbackTokens:
        """The graph's feedback tokens (keys load on first use)."""
        if self._tokens is None:
            self._tokens = graph_tokens(self.spec)
        return self._tokens

    def feedback_token(self, notes: dict[str, Any], request_id: str) -> str | None:
        """Take the router decisions out of ``notes``; a signed token covering them, or None
        when no router decided."""
        decisions = notes.pop(DECISIONS, None)
        if not decisions:
            return None
        return self.tokens.issue(
            [Decision.from_json(d) for d in decisions], request_id, time.time()
        )

    async def nodes_ready(self, timeout_s: float = 2.0) -> bool:
        """Whether every node answers within ``timeout_s`` (a readiness probe's own timeout is
        short: Kubernetes gives up after 1 s by default)."""
        try:
            await asyncio.wait_for(
                asyncio.gather(*(h.stats.remote() for h in self.handles.values())), timeout_s
            )
        except Exception:
            return False
        return True
