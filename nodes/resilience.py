"""What happens when a call between nodes fails or runs late: deadlines, retries, breakers.

Every request carries an absolute deadline (``ctx["deadline"]``, wall-clock seconds: it crosses
processes) and a retry budget (``ctx["retry_budget"]``) through every hop. :class:`CallGuard`
makes one node's calls for a caller, in any deployment and fused or not:

- A call whose deadline has passed is not made (:class:`~nodes.errors.DeadlineExceededError`,
  504 naming the node); a call still running at its deadline, or past the node's own
  ``timeout_s``, is cancelled with the same error. The callee gets a slightly earlier deadline
  than its caller waits for, so the deepest late node is the one the 504 names.
- A failed call is retried when the node's ``retries.on`` lists its kind (:func:`classify`) and
  tries, the request's deadline and its retry budget allow, after a jittered exponential backoff.
  The rule that makes this safe: ``replica_died`` and ``unavailable`` failures never finished
  anywhere, and a node's call is a function of its payload (inference, preprocessing); calls that
  change state (feedback, operator actions) never go through a guard. ``timeout`` retries are
  opt-in. Streams are retried only before their first item.
- A node's :class:`CircuitBreaker` (``breaker:``) sheds its calls while open
  (:class:`~nodes.errors.BreakerOpenError`, 503).

Pure: the clock, the RNG and the sleep are injected, so tests are exact.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nodes.breaker import BreakerState, CircuitBreaker
from nodes.call_spec import BreakerSpec, RetrySpec
from nodes.errors import BreakerOpenError, DeadlineExceededError
from nodes.failures import classify, counts_as_failure

__all__ = [
    "BUDGET",
    "DEADLINE",
    "HOP_MARGIN_S",
    "STREAM_GAP",
    "CallGuard",
    "CallSettings",
    "RetryBudget",
    "check_deadline",
    "classify",
    "counts_as_failure",
    "remaining_s",
]

T = TypeVar("T")

#: ctx key of the request's deadline (wall-clock seconds since the epoch).
DEADLINE = "deadline"
#: ctx key of the request's :class:`RetryBudget`.
BUDGET = "retry_budget"
#: ctx key of the longest wait for a stream's next item (s), for streamed requests.
STREAM_GAP = "stream_gap_s"
#: Most of a call's remaining time the callee is told it does not have (at most a tenth of it):
#: its own deadline comes first, and its 504 has time to travel back, so a late node is named by
#: itself rather than by a caller above it (20 ms was too little for a hop on a busy machine).
HOP_MARGIN_S = 0.1


def remaining_s(ctx: Mapping[str, Any], now: float) -> float:
    """Seconds left before the request's deadline (``inf`` without one)."""
    deadline = ctx.get(DEADLINE)
    return math.inf if deadline is None else float(deadline) - now


def check_deadline(ctx: Mapping[str, Any], node: str, now: float) -> None:
    """Refuse to start ``node``'s work once the request's deadline has passed.

    Raises:
        DeadlineExceededError: it has (504 naming ``node``).
    """
    if remaining_s(ctx, now) <= 0:
        raise DeadlineExceededError(node)


class RetryBudget:
    """How many retries one request may still spend. Shared by the hops of one process (a
    request's fused nodes hold the same object); a remote hop gets a copy of what is left."""

    def __init__(self, left: int):
        self.left = left

    def take(self) -> bool:
        """Spend one retry; False when none is left."""
        if self.left <= 0:
            return False
        self.left -= 1
        return True

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.left,))

    def __repr__(self) -> str:
        return f"RetryBudget(left={self.left})"


# --- the guard around one node's calls -----------------------------------------------------------


@dataclass(frozen=True)
class CallSettings:
    """How callers call one node: its own timeout, retries and (preprocess and model nodes)
    breaker. Routers and ensembles use their ``breaker:`` per arm / member instead."""

    timeout_s: float | None = None
    retries: RetrySpec = field(default_factory=RetrySpec)
    breaker: BreakerSpec | None = None

    @classmethod
    def of(cls, node: Any) -> CallSettings:
        """The settings of a node spec."""
        own_breaker = getattr(node, "kind", None) in ("preprocess", "model")
        return cls(
            timeout_s=None if getattr(node, "kind", None) == "ensemble" else node.timeout_s,
            retries=node.retries,
            breaker=node.breaker if own_breaker else None,
        )


class CallGuard:
    """Makes the calls of one caller replica to the nodes it calls, by node name, under their
    :class:`CallSettings` (see the module docstring).

    Args:
        settings: call settings by node name (nodes without an entry get the defaults).
        clock: wall-clock seconds (deadlines cross processes).
        monotonic: monotonic seconds (breakers).
        rng: jitter of retry backoff.
        sleep: ``asyncio.sleep`` or a fake.
        on_breaker: called with ``(node, state)`` on every breaker transition.
        on_retry: called with ``(node, kind)`` for every retry.
    """

    def __init__(
        self,
        settings: Mapping[str, CallSettings] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        on_breaker: Callable[[str, BreakerState], None] | None = None,
        on_retry: Callable[[str, str], None] | None = None,
    ):
        self.settings = dict(settings or {})
        self._clock = clock
        self._rng = rng or random.Random()
        self._sleep = sleep
        self.breakers: dict[str, CircuitBreaker] = {}
        for name, s in self.settings.items():
            if s.breaker is not None:
                self.breakers[name] = CircuitBreaker(
                    s.breaker, monotonic, _bind(on_breaker, name) if on_breaker else None
                )
        #: Retries made, by node and failure kind.
        self.retried: dict[tuple[str, str], int] = {}
        self._on_retry = on_retry

    def _settings(self, node: str) -> CallSettings:
        return self.settings.get(node) or _DEFAULT

    def _limits(self, node: str, ctx: Mapping[str, Any]) -> tuple[float, bool]:
        """Seconds the call may take, and whether that limit is the node's own timeout."""
        now = self._clock()
        left = remaining_s(ctx, now)
        own = self._settings(node).timeout_s
        if own is not None and own < left:
            return own, True
        return left, False

    def _child_ctx(self, ctx: Mapping[str, Any], limit: float) -> dict[str, Any]:
        if math.isinf(limit):
            return dict(ctx)
        margin = min(HOP_MARGIN_S, 0.1 * limit)
        return {**ctx, DEADLINE: self._clock() + limit - margin}

    def _admit(self, node: str, ctx: Mapping[str, Any]) -> CircuitBreaker | None:
        check_deadline(ctx, node, self._clock())
        breaker = self.breakers.get(node)
        if breaker is not None and not breaker.allow():
            raise BreakerOpenError(node, breaker.retry_after_s())
        return breaker

    async def _may_retry(self, node: str, kind: str | None, tries: int, ctx: Any) -> bool:
        """Whether to try ``node`` again after a failure of ``kind`` (waits the backoff)."""
        retries = self._settings(node).retries
        if kind is None or kind not in retries.on or tries >= retries.attempts:
            return False
        backoff = retries.backoff_ms / 1000.0 * (2 ** (tries - 1)) * self._rng.uniform(0.5, 1.5)
        if remaining_s(ctx, self._clock()) <= backoff:
            return False
        budget = ctx.get(BUDGET)
        if budget is not None and not budget.take():
            return False
        self.retried[(node, kind)] = self.retried.get((node, kind), 0) + 1
        if self._on_retry is not None:
            self._on_retry(node, kind)
        if backoff > 0:
            await self._sleep(backoff)
        return True

    async def _retry_or_raise(
        self,
        node: str,
        exc: BaseException,
        expired: bool,
        own: bool,
        limit: float,
        tries: int,
        ctx: dict[str, Any],
    ) -> None:
        """After a failed try of ``node``: return to try again (the backoff waited), or raise
        what its caller sees: the failure itself, or a 504 when the try's time ran out."""
        if not expired:
            if isinstance(exc, Exception) and await self._may_retry(
                node, classify(exc), tries, ctx
            ):
                return
            raise exc
        if own and await self._may_retry(node, "timeout", tries, ctx):
            return
        raise DeadlineExceededError(node, limit if own else None) from None

    async def call(
        self, node: str, make: Callable[[dict[str, Any]], Awaitable[T]], ctx: dict[str, Any]
    ) -> T:
        """``make(child_ctx)``, the call of ``node``, under its deadline, retries and breaker."""
        tries = 0
        while True:
            breaker = self._admit(node, ctx)
            tries += 1
            limit, own = self._limits(node, ctx)
            timer = asyncio.timeout(None if math.isinf(limit) else limit)
            try:
                async with timer:
                    result = await make(self._child_ctx(ctx, limit))
            except BaseException as exc:
                _outcome(breaker, exc)
                await self._retry_or_raise(node, exc, timer.expired(), own, limit, tries, ctx)
                continue
            if breaker is not None:
                breaker.record(True)
            return result

    async def stream(
        self,
        node: str,
        open_stream: Callable[[dict[str, Any]], AsyncIterator[T]],
        ctx: dict[str, Any],
    ) -> AsyncIterator[T]:
        """Items of ``node``'s stream: the first by the deadline, each next within
        ``ctx[STREAM_GAP]`` seconds of the one before (no limit without it); retried, under the
        same rules as :meth:`call`, only before the first item."""
        gap = ctx.get(STREAM_GAP)
        tries = 0
        while True:
            breaker = self._admit(node, ctx)
            tries += 1
            limit, own = self._limits(node, ctx)
            child = self._child_ctx(ctx, limit)
            if gap is not None:
                child[STREAM_GAP] = max(0.0, gap - min(HOP_MARGIN_S, 0.1 * gap))
            items = open_stream(child)
            iterator = items.__aiter__()
            timer = asyncio.timeout(None if math.isinf(limit) else limit)
            try:
                async with timer:
                    first = await iterator.__anext__()
            except StopAsyncIteration:
                if breaker is not None:
                    breaker.record(True)
                return
            except BaseException as exc:
                await _close(items)
                _outcome(breaker, exc)
                await self._retry_or_raise(node, exc, timer.expired(), own, limit, tries, ctx)
                continue
            break
        done = False
        try:
            yield first
            while True:
                timer = asyncio.timeout(gap)
                try:
                    async with timer:
                        item = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    if not timer.expired():
                        raise
                    raise DeadlineExceededError(node, gap) from None
                yield item
            done = True
            if breaker is not None:
                breaker.record(True)
        except BaseException as exc:  # GeneratorExit too: the consumer stopped early
            _outcome(breaker, exc)
            raise
        finally:
            if not done:
                await _close(items)

    def state(self) -> dict[str, Any]:
        """Breakers (each :meth:`CircuitBreaker.to_dict`, by node) and retries made (by
        ``node:kind``), for ``GET /<graph>/graph``."""
        out: dict[str, Any] = {}
        if self.breakers:
            out["breakers"] = {name: b.to_dict() for name, b in self.breakers.items()}
        if self.retried:
            out["retries"] = {f"{n}:{k}": count for (n, k), count in sorted(self.retried.items())}
        return out


_DEFAULT = CallSettings()


def _bind(
    on_breaker: Callable[[str, BreakerState], None], node: str
) -> Callable[[BreakerState], None]:
    return lambda state: on_breaker(node, state)


def _outcome(breaker: CircuitBreaker | None, exc: BaseException) -> None:
    """Tell ``breaker`` how a call it let through ended with ``exc``."""
    if breaker is None:
        return
    if isinstance(exc, GeneratorExit) or not counts_as_failure(exc):
        breaker.release()
    else:
        breaker.record(False)


async def _close(items: Any) -> None:
    """Close a stream that is being given up (a fused stream in place, a handle's by cancel)."""
    aclose = getattr(items, "aclose", None)
    if aclose is not None:
        await aclose()
        return
    cancel = getattr(items, "cancel", None)
    if cancel is not None:
        cancel()
