"""A circuit breaker over a sliding window of call outcomes (``breaker:`` on a node).

Pure: the clock is injected.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from nodes.call_spec import BreakerSpec

__all__ = ["BREAKER_LEVELS", "BreakerState", "CircuitBreaker"]

#: A breaker state as a number, for gauges: 0 closed, 1 half-open, 2 open.
BREAKER_LEVELS = {"closed": 0, "half_open": 1, "open": 2}

BreakerState = str  # "closed", "open", "half_open"


class CircuitBreaker:
    """Closed, half-open and open, over a sliding window of call outcomes (see
    :class:`~nodes.call_spec.BreakerSpec`).

    Args:
        spec: the breaker's settings.
        clock: monotonic seconds.
        on_change: called with the new state on every transition (metrics, logs).
    """

    def __init__(
        self,
        spec: BreakerSpec,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ):
        self.spec = spec
        self._clock = clock
        self._on_change = on_change
        self.state: BreakerState = "closed"
        self._calls: deque[tuple[float, bool]] = deque()  # (time, ok)
        self._failures = 0
        self._opened_at = 0.0
        self._probes_left = 0  # half-open: probes not yet let through
        self._probes_ok = 0
        self.opened = 0  # times it opened
        self.shed = 0  # calls refused while open

    def allow(self) -> bool:
        """Whether a call may go through now (counts the ones it sheds)."""
        now = self._clock()
        if self.state == "open" and now - self._opened_at >= self.spec.open_s:
            self._set("half_open")
            self._probes_left, self._probes_ok = self.spec.probes, 0
        if self.state == "closed":
            return True
        if self.state == "half_open" and self._probes_left > 0:
            self._probes_left -= 1
            return True
        self.shed += 1
        return False

    def retry_after_s(self) -> int:
        """Whole seconds until the breaker lets a probe through (at least 1)."""
        if self.state != "open":
            return 1
        left = self.spec.open_s - (self._clock() - self._opened_at)
        return max(1, math.ceil(left))

    def release(self) -> None:
        """A call :meth:`allow` let through ended without an outcome (its caller went away):
        a half-open breaker lets another probe through instead."""
        if self.state == "half_open":
            self._probes_left += 1

    def record(self, ok: bool) -> None:
        """The outcome of a call :meth:`allow` let through."""
        now = self._clock()
        if self.state == "half_open":
            if not ok:
                self._open(now)
                return
            self._probes_ok += 1
            if self._probes_ok >= self.spec.probes:
                self._calls.clear()
                self._failures = 0
                self._set("closed")
            return
        if self.state == "open":
            return  # a call let through before it opened: its outcome is already known
        self._calls.append((now, ok))
        self._failures += 0 if ok else 1
        self._trim(now)
        calls = len(self._calls)
        if calls >= self.spec.min_calls and self._failures / calls >= self.spec.failure_ratio:
            self._open(now)

    def _trim(self, now: float) -> None:
        horizon = now - self.spec.window_s
        while self._calls and self._calls[0][0] < horizon:
            _, ok = self._calls.popleft()
            self._failures -= 0 if ok else 1

    def _open(self, now: float) -> None:
        self._opened_at = now
        self.opened += 1
        self._calls.clear()
        self._failures = 0
        self._set("open")

    def _set(self, state: BreakerState) -> None:
        if state != self.state:
            self.state = state
            if self._on_change is not None:
                self._on_change(state)

    def to_dict(self) -> dict[str, Any]:
        """State and counts, for ``/graph`` and ``/experiments``."""
        self._trim(self._clock())
        return {
            "state": self.state,
            "calls_in_window": len(self._calls),
            "failures_in_window": self._failures,
            "opened": self.opened,
            "shed": self.shed,
        }

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, opened={self.opened})"
