"""One exception root for the framework; each error carries the HTTP status it maps to."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError


def new_error_id() -> str:
    """A short random id that ties an error response to its log line."""
    return secrets.token_hex(6)


class GraphError(Exception):
    """Root of every error this framework raises on purpose.

    Attributes:
        status_code: the HTTP status the ingress answers with when this error reaches it.
    """

    status_code: int = 500

    def to_json(self) -> dict[str, Any]:
        """The JSON body the ingress sends for this error."""
        return {"error": type(self).__name__, "detail": str(self)}


class GraphValidationError(GraphError, ValueError):
    """A graph failed build-time validation; ``issues`` holds a ``(path, message)`` per problem."""

    status_code = 400

    def __init__(self, issues: list[tuple[str, str]]):
        self.issues = list(issues)
        lines = [f"{path}: {message}" for path, message in self.issues]
        noun = "problem" if len(lines) == 1 else "problems"
        super().__init__(f"invalid graph ({len(lines)} {noun}):\n  " + "\n  ".join(lines))

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across Ray processes
        return (type(self), (self.issues,))


class RequestValidationError(GraphError, ValueError):
    """A request does not match the graph's input schema (HTTP 422); ``field`` names the field."""

    status_code = 422

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across Ray processes
        return (type(self), (self.field, self.message))

    def to_json(self) -> dict[str, Any]:
        loc = ["body", *self.field.split(".")]
        return {"detail": [{"loc": loc, "msg": self.message, "type": "value_error"}]}


def error_field(loc: Iterable[Any], *, brackets: bool = False, root: str = "body") -> str:
    """A pydantic error location as a field name: ``messages.0.role``, or with ``brackets``
    ``inputs[0].name`` (the Open Inference Protocol's and the config paths' style); ``root``
    for the root."""
    out = ""
    for part in loc:
        if brackets and isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or root


def error_message(
    err: Mapping[str, Any], *, unknown: str = "unknown key", echo: bool = False
) -> str:
    """A pydantic error's message in our words: ``unknown`` for an extra key, Value/Assertion
    error prefixes dropped; with ``echo``, the offending scalar value appended (``, got 3``)."""
    kind, msg = err["type"], str(err["msg"])
    if kind == "extra_forbidden":
        return f"{unknown}; remove it or check its spelling"
    if kind == "missing":
        return "required key is missing"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    got = err.get("input")
    if echo and kind not in ("model_type", "dict_type") and not isinstance(got, (dict, list)):
        return f"{msg}, got {got!r}"
    return msg


def request_error(exc: ValidationError, *, brackets: bool = False) -> RequestValidationError:
    """The first problem of a request body's validation as a 422 naming its field.

    A body that is not JSON, or not an object, is reported on ``body``; cross-field rules that
    name their field first (``"stop: give at most 4 ..."``) are reported on that field.
    """
    err = exc.errors(include_url=False)[0]
    loc = tuple(err["loc"])
    msg = error_message(err, unknown="unknown parameter")
    if err["type"] == "json_invalid":
        return RequestValidationError("body", f"not valid JSON: {msg}")
    if err["type"] in ("model_type", "dict_type") and not loc:
        return RequestValidationError("body", "must be a JSON object")
    if err["type"] != "extra_forbidden" and ": " in msg and not loc:
        field, _, msg = msg.partition(": ")
        loc = (field,)
    return RequestValidationError(error_field(loc, brackets=brackets), msg)


def fastapi_detail(exc: ValidationError) -> list[dict[str, Any]]:
    """Every problem of a request body's validation in FastAPI's 422 shape (``loc`` starts with
    ``body``), for ``{"detail": [...]}``."""
    return [
        {
            "type": e["type"],
            "loc": ["body", *e["loc"]],
            "msg": e["msg"],
            "input": None if e["type"] == "json_invalid" else e.get("input"),
        }
        for e in exc.errors(include_url=False)
    ]


class PayloadTooLargeError(GraphError, ValueError):
    """The request body is larger than the graph's ``max_body_bytes`` (HTTP 413)."""

    status_code = 413


class OverloadedError(GraphError, RuntimeError):
    """A node's queue is full (HTTP 503); clients should retry after ``retry_after_s``."""

    status_code = 503

    def __init__(self, message: str, retry_after_s: int = 1):
        self.retry_after_s = retry_after_s
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.retry_after_s))


class NodeError(GraphError, RuntimeError):
    """A node failed while serving a request (HTTP 500).

    The response names the node and an error id, never the exception's own text: that goes to
    the log line carrying the same error id and the request id.

    Attributes:
        node: the failing node's name (None when the failure was between nodes).
        error_id: the id of the log line with the details.
    """

    status_code = 500

    def __init__(self, node: str | None, error_id: str | None = None):
        self.node = node
        self.error_id = error_id or new_error_id()
        where = f"node {node!r}" if node else "the graph"
        super().__init__(
            f"{where} failed; the server log has the details under error id {self.error_id}"
        )

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across Ray processes
        return (type(self), (self.node, self.error_id))

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "node": self.node, "error_id": self.error_id}


class InternalError(GraphError, RuntimeError):
    """Anything unexpected outside the graph's nodes (HTTP 500 with an error id)."""

    status_code = 500

    def __init__(self, error_id: str | None = None):
        self.error_id = error_id or new_error_id()
        super().__init__(
            f"internal error; the server log has the details under error id {self.error_id}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.error_id,))

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "error_id": self.error_id}


class UnsupportedMediaTypeError(GraphError, ValueError):
    """A POST body that is not ``application/json`` (HTTP 415)."""

    status_code = 415


class NotReadyError(GraphError, RuntimeError):
    """The graph is not ready to serve (HTTP 503)."""

    status_code = 503


class QuorumError(GraphError, RuntimeError):
    """Too few ensemble members answered in time (HTTP 504); names the ensemble ``node`` and
    carries an ``error_id`` for the log line with the request id."""

    status_code = 504

    def __init__(self, message: str, node: str | None = None, error_id: str | None = None):
        self.node = node
        self.error_id = error_id or new_error_id()
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across Ray processes
        return (type(self), (str(self), self.node, self.error_id))

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "node": self.node, "error_id": self.error_id}


class ModelNotFoundError(GraphError, LookupError):
    """An Open Inference Protocol call named a model this graph does not serve (HTTP 404)."""

    status_code = 404


class UnauthorizedError(GraphError, PermissionError):
    """A control endpoint was called without the configured bearer token (HTTP 401)."""

    status_code = 401


class DeadlineExceededError(GraphError, TimeoutError):
    """The request's deadline (the graph's ``timeout_s``) or a node's own ``timeout_s`` passed
    while ``node`` was working on it (HTTP 504); carries an ``error_id`` for the log line with
    the request id."""

    status_code = 504

    def __init__(
        self, node: str | None, timeout_s: float | None = None, error_id: str | None = None
    ):
        self.node = node
        self.timeout_s = timeout_s
        self.error_id = error_id or new_error_id()
        where = f"node {node!r}" if node else "the graph"
        within = f" within {timeout_s:g}s" if timeout_s is not None else ""
        super().__init__(f"deadline exceeded: {where} did not answer{within}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across Ray processes
        return (type(self), (self.node, self.timeout_s, self.error_id))

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "node": self.node, "error_id": self.error_id}


class BreakerOpenError(OverloadedError):
    """The circuit breaker guarding ``node`` is open: the call was shed without being made
    (HTTP 503 with ``Retry-After``: when the breaker next lets a probe through)."""

    def __init__(self, node: str, retry_after_s: int = 1):
        self.node = node
        super().__init__(
            f"node {node!r} is failing and its circuit breaker is open; retry later",
            retry_after_s,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.node, self.retry_after_s))

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "node": self.node}
