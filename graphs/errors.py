"""One exception root for the framework; each error carries the HTTP status it maps to."""

from __future__ import annotations

import secrets
from typing import Any


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
    """Too few ensemble members answered in time (HTTP 504)."""

    status_code = 504


class ModelNotFoundError(GraphError, LookupError):
    """An Open Inference Protocol call named a model this graph does not serve (HTTP 404)."""

    status_code = 404


class UnauthorizedError(GraphError, PermissionError):
    """A control endpoint was called without the configured bearer token (HTTP 401)."""

    status_code = 401
