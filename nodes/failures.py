"""What a failed call says about its callee: retryable (``replica_died``, ``unavailable``) or
not, and whether it counts against a circuit breaker."""

from __future__ import annotations

import asyncio

from nodes.calls import unwrap
from nodes.errors import GraphError

__all__ = ["classify", "counts_as_failure"]

#: Ray's names for "the replica (or its process, or its node) went away before answering".
_DIED = {
    "ActorDiedError",
    "RayActorError",
    "WorkerCrashedError",
    "NodeDiedError",
    "LocalRayletDiedError",
    "ReplicaUnavailableError",
    "OwnerDiedError",
    "ObjectLostError",
}
#: ... and "no replica could take the call" (it never started).
_UNAVAILABLE = {"ActorUnavailableError", "DeploymentUnavailableError"}


def classify(exc: BaseException) -> str | None:
    """``replica_died``, ``unavailable`` or None (not retryable) for a failed call's exception.

    gRPC errors of a handle call (Ray Serve's gRPC transport) count as ``unavailable`` when
    the status says the peer could not be reached, and as ``replica_died`` when the connection
    broke mid-call.
    """
    cause = unwrap(exc)
    if isinstance(cause, GraphError):
        return None  # answered on purpose by a node: not a transport failure
    names = {cls.__name__ for cls in type(cause).__mro__}
    if names & _UNAVAILABLE:
        return "unavailable"
    if names & _DIED:
        return "replica_died"
    if "AioRpcError" in names or "RpcError" in names:
        code = getattr(cause, "code", None)
        status = str(code() if callable(code) else code)
        if "UNAVAILABLE" in status:
            return "unavailable"
        if "CANCELLED" in status or "INTERNAL" in status or "UNKNOWN" in status:
            return "replica_died"
    return None


def counts_as_failure(exc: BaseException) -> bool:
    """Whether a failed call counts against its target's breaker: errors and timeouts do;
    requests refused as invalid (4xx) and callers that went away do not."""
    if isinstance(exc, asyncio.CancelledError):
        return False
    cause = unwrap(exc)
    if type(cause).__name__ in ("RequestCancelledError", "TaskCancelledError"):
        return False
    if isinstance(cause, GraphError):
        return cause.status_code >= 500
    return True
