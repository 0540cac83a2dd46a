"""How a node is called: its retry policy and its circuit breaker (``retries:``, ``breaker:``).

Deadlines are plain fields (the graph's and each node's ``timeout_s``); the behaviour that reads
these settings is in :mod:`nodes.resilience`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from nodes.spec_base import Frozen

__all__ = ["RETRY_CONDITIONS", "BreakerSpec", "RetryOn", "RetrySpec"]

#: What a failed call may be retried on:
#: ``replica_died``: the callee's replica died (or its node went away) before it answered;
#: ``unavailable``: no replica could be reached to take the call (it never started);
#: ``timeout``: the node's own ``timeout_s`` passed (the call may have run: only for nodes whose
#: calls can safely run twice, which every inference node's can).
RETRY_CONDITIONS = ("replica_died", "unavailable", "timeout")
RetryOn = Literal["replica_died", "unavailable", "timeout"]
DEFAULT_RETRY_ON: tuple[RetryOn, ...] = ("replica_died", "unavailable")


class RetrySpec(Frozen):
    """Retries of calls to one node, made by its callers (``retries:`` on the node).

    The default retries once when the callee's replica died or could not be reached: the call
    did not finish anywhere, and a node's call is a function of its payload. Retries stop at the
    request's deadline and spend the graph's per-request ``retry_budget``.
    """

    attempts: int = Field(
        2, ge=1, le=10, description="Tries in all, the first included (1: never retry)."
    )
    on: list[RetryOn] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_ON),
        description="Failures that are retried: replica_died, unavailable, timeout (the node's "
        "own timeout_s; the graph's deadline is never retried).",
    )

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 (PyYAML, so Serve configs too) reads an unquoted `on:` key as the boolean true.
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data

    backoff_ms: float = Field(
        20.0,
        ge=0,
        le=60_000,
        description="Wait before the first retry (ms); doubles for each further one, with "
        "jitter, and never passes the request's deadline.",
    )


class BreakerSpec(Frozen):
    """A circuit breaker (``breaker:``): on a router it guards each arm, on an ensemble each
    member, on any other node the calls its callers make to it. Each caller replica keeps its
    own breakers.

    Closed, it counts failures (errors and timeouts; never requests refused as invalid, nor
    callers that went away) over the last ``window_s``; with at least ``min_calls`` calls and a
    failure ratio of ``failure_ratio`` or more it opens and sheds calls (the router or ensemble
    uses its ``fallback``; elsewhere the call fails at once with 503) for ``open_s``, then lets
    ``probes`` calls through (half-open): all succeed and it closes, one fails and it opens again.
    """

    failure_ratio: float = Field(
        0.5, gt=0, le=1, description="Share of failed calls in the window that opens the breaker."
    )
    window_s: float = Field(10.0, gt=0, le=3600, description="Window failures are counted over.")
    min_calls: int = Field(
        10, ge=1, description="Fewest calls in the window before the ratio can open it."
    )
    open_s: float = Field(
        5.0, gt=0, le=3600, description="How long an open breaker sheds calls before probing."
    )
    probes: int = Field(
        3, ge=1, le=100, description="Calls let through half-open; all must succeed to close."
    )
