"""One exception root for the framework; each error carries the HTTP status it maps to."""

from __future__ import annotations

from typing import Any


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
    """A node failed while serving a request (HTTP 500, or the status its cause carries)."""

    status_code = 500


class QuorumError(GraphError, RuntimeError):
    """Too few ensemble members answered in time (HTTP 504)."""

    status_code = 504


class ModelNotFoundError(GraphError, LookupError):
    """An Open Inference Protocol call named a model this graph does not serve (HTTP 404)."""

    status_code = 404


class UnauthorizedError(GraphError, PermissionError):
    """A control endpoint was called without the configured bearer token (HTTP 401)."""

    status_code = 401
