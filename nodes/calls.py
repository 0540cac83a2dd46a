"""How nodes call each other: every call returns ``(payload, served_by, notes)``.

Nodes that call other nodes (routers, ensembles) do it through a :class:`ChainRunner` the
runtime gives them (:class:`graphs.replica.HandleRunner` over Ray Serve handles), so node
behaviour never depends on how the callee is deployed.

``served_by`` lists the node names that produced the result, in call order; ``notes`` carries
per-node remarks the ingress returns (e.g. which ensemble members were left out). Router nodes put
their decisions under ``notes["decisions"]`` (a list of ``[router, arm]`` / ``[router, arm,
context]``); the ingress takes them out and signs them into the response's feedback token.

Streaming (LLM outputs) uses the same graph: a node's ``stream`` method yields payload chunks,
and :func:`meta_item` items that carry ``served_by`` and ``notes`` instead of output. A chain
streams by calling all but its last node as usual and streaming the last.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

from ray.exceptions import RayTaskError
from ray.serve.exceptions import BackPressureError

from nodes.errors import GraphError, NodeError, OverloadedError

log = logging.getLogger("servegraph")

Payload = dict[str, Any]
Result = tuple[Payload, list[str], dict[str, Any]]

#: Key of a stream item that carries metadata (served_by, notes), not output.
META = "__meta__"
#: Key in ``notes`` under which router decisions travel to the ingress.
DECISIONS = "decisions"


class ChainRunner(Protocol):
    """Calls a chain of nodes by name, each output feeding the next node."""

    async def call(self, chain: Sequence[str], payload: Payload, ctx: dict[str, Any]) -> Result:
        """The chain's result: last output, every node that served, merged notes."""
        ...

    def stream(
        self, chain: Sequence[str], payload: Payload, ctx: dict[str, Any]
    ) -> AsyncIterator[Payload]:
        """Stream the chain: all but the last node run as usual, the last one streams (its
        items and :func:`meta_item` items pass through); closing the iterator cancels it."""
        ...


def meta_item(served_by: list[str], notes: dict[str, Any]) -> Payload:
    """A stream item carrying ``served_by`` and ``notes`` rather than output."""
    return {META: {"served_by": served_by, "notes": notes}}


def merge_notes(notes: dict[str, Any], more: Mapping[str, Any]) -> None:
    """Fold ``more`` into ``notes``; decisions accumulate instead of replacing each other."""
    for key, value in more.items():
        if key == DECISIONS:
            notes.setdefault(DECISIONS, []).extend(value)
        else:
            notes[key] = value


def unwrap(exc: BaseException) -> BaseException:
    """The exception a remote call raised, without Ray's task-error wrappers."""
    while isinstance(exc, RayTaskError) and getattr(exc, "cause", None) is not None:
        exc = exc.cause
    return exc


def public_error(exc: BaseException, node: str | None, request_id: Any = None) -> GraphError:
    """Any failure as an error safe to answer with.

    Errors the framework raises on purpose (:class:`GraphError`) pass unchanged; Serve's
    backpressure becomes a 503; anything else is logged here, with the request id and a new
    error id, and becomes a :class:`NodeError` that names ``node`` and the error id but not the
    exception's text (it may hold paths, data or secrets).
    """
    cause = unwrap(exc)
    if isinstance(cause, GraphError):
        return cause
    if isinstance(cause, BackPressureError):
        where = f"node {node!r}" if node else "the graph"
        return OverloadedError(f"{where} is overloaded: {cause}")
    error = NodeError(node)
    log.error(
        "request %s: node %s failed (error id %s): %s: %s",
        request_id,
        node or "-",
        error.error_id,
        type(cause).__name__,
        cause,
        exc_info=(type(cause), cause, cause.__traceback__),
    )
    return error
