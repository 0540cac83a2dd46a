"""Errors of a router's shared state that reach clients and replicas."""

from __future__ import annotations

from typing import Any

from nodes.errors import GraphError

__all__ = ["StateUnavailableError"]


class StateUnavailableError(GraphError, RuntimeError):
    """The router's state could not take a change durably, or a replica could not get a view it
    may decide on (HTTP 503); nothing was applied. Retry after ``retry_after_s``.

    Raised when the state holder cannot append to its change log (disk full, read-only folder),
    and by a blue/green router whose view is older than its lease while the holder is
    unreachable (serving it could send traffic to an arm already switched away from).
    """

    status_code = 503

    def __init__(self, message: str, retry_after_s: int = 1):
        self.retry_after_s = retry_after_s
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across Ray processes
        return (type(self), (str(self), self.retry_after_s))
