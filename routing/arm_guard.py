"""A router's arms under failure: a circuit breaker per arm and the router's fallback.

:class:`ArmGuard` is what :class:`routing.router.Router` asks before it calls an arm (is its
breaker letting calls through?) and tells after (ok, failed, or cancelled by the caller: a
client closing its connection says nothing about the arm), and what serves a request whose arm
failed or was shed, with the router's ``fallback:`` chain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from nodes.breaker import BREAKER_LEVELS, CircuitBreaker
from nodes.calls import ChainRunner, Payload, Result, unwrap
from nodes.errors import BreakerOpenError, DeadlineExceededError
from nodes.resilience import HOP_MARGIN_S, counts_as_failure, remaining_s
from nodes.spec import refs
from routing.metrics import RouterMetrics
from routing.spec import RouterNode

__all__ = ["ArmGuard"]

log = logging.getLogger(__name__)


class ArmGuard:
    """Breakers of one router replica's arms (``breaker:``) and its ``fallback:``.

    Args:
        spec: the router node.
        runner: calls the fallback chain.
        metrics: where shed / fallback / cancelled outcomes and breaker states go.
        clock: monotonic seconds, for the breakers.
    """

    def __init__(
        self,
        spec: RouterNode,
        runner: ChainRunner,
        metrics: RouterMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.spec = spec
        self.labels = [arm.label for arm in spec.arms]
        self._runner = runner
        self._metrics = metrics
        self.chain = refs(spec.fallback) if spec.fallback is not None else None
        self.breakers: list[CircuitBreaker | None] = [
            CircuitBreaker(spec.breaker, clock, self._changed(label))
            if spec.breaker is not None
            else None
            for label in self.labels
        ]
        self.fallbacks = 0

    def admit(self, arm: int) -> bool:
        """Whether ``arm``'s breaker lets a call through now."""
        breaker = self.breakers[arm]
        if breaker is None or breaker.allow():
            return True
        self._count(arm, "shed")
        return False

    def ended(self, arm: int, exc: BaseException | None) -> bool | None:
        """Note how a call of ``arm`` ended (``exc`` None: it answered); returns True (ok),
        False (failed) or None (cancelled by its caller: neither)."""
        ok: bool | None = True
        if exc is not None:
            failed = not isinstance(exc, GeneratorExit) and counts_as_failure(exc)
            ok = False if failed else None
        breaker = self.breakers[arm]
        if breaker is not None:
            breaker.release() if ok is None else breaker.record(bool(ok))
        if ok is None:
            self._count(arm, "cancelled")
        return ok

    def can_fall_back(self, ctx: dict[str, Any], exc: BaseException | None = None) -> bool:
        """Whether a fallback is declared and the request's deadline leaves time for it: not
        when the arm failed because that deadline passed (the 504 names the late arm, not a
        fallback started with a tenth of a second left)."""
        if self.chain is None or remaining_s(ctx, time.time()) <= HOP_MARGIN_S:
            return False
        cause = unwrap(exc) if exc is not None else None
        return not (isinstance(cause, DeadlineExceededError) and cause.timeout_s is None)

    def shed_error(self, arm: int) -> BreakerOpenError:
        """The 503 for a request whose arm is shed and that has no fallback."""
        breaker = self.breakers[arm]
        return BreakerOpenError(self.labels[arm], breaker.retry_after_s() if breaker else 1)

    async def fall_back(
        self, arm: int, reason: str, payload: Payload, ctx: dict[str, Any]
    ) -> Result:
        """Serve the request with the fallback chain instead of ``arm`` (``reason``: error or
        breaker_open). Its answer carries no router decision: a reward for it must not credit
        the arm that did not answer. ``notes[<router>]`` says what happened."""
        assert self.chain is not None
        self.fallbacks += 1
        self._count(arm, "fallback")
        out, served, notes = await self._runner.call(self.chain, payload, ctx)
        note = {"fallback": {"arm": self.labels[arm], "reason": reason}}
        return out, served, {**notes, self.spec.name: note}

    def state(self) -> dict[str, Any]:
        """This replica's arm breakers and fallback count, for ``/graph`` and ``/experiments``."""
        out: dict[str, Any] = {}
        if any(b is not None for b in self.breakers):
            out["breakers"] = {
                label: b.to_dict() for label, b in zip(self.labels, self.breakers) if b is not None
            }
        if self.chain is not None:
            out["fallback"] = {"target": self.chain, "served": self.fallbacks}
        return out

    def _count(self, arm: int, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.outcome(self.labels[arm], outcome)

    def _changed(self, label: str) -> Callable[[str], None]:
        def changed(state: str) -> None:
            log.warning("router %s: circuit breaker of arm %s is %s", self.spec.name, label, state)
            if self._metrics is not None:
                self._metrics.breaker_state(label, BREAKER_LEVELS[state])

        return changed
