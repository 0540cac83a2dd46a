"""Shadow (mirror) traffic, the gate in front of each shadow call: whether to mirror a request,
and whether a slot is free for it.

- :class:`MirrorDecider`: mirror a configured fraction of requests (injected RNG).
- :class:`InFlightLimiter`: at most ``max_in_flight`` shadow calls at once; the excess is
  dropped and counted, so the shadow never queues behind or slows the primary.

The router fires the shadow call as a background task after ``try_acquire()`` and calls
``release()`` when it ends, then feeds both outputs to the comparator
(:class:`~routing.shadow_compare.ShadowComparator`) and, for a sample of pairs, to the log
(:class:`~routing.shadow_log.RotatingJsonlWriter`). The settings are
:class:`~routing.config.ShadowConfig`.
"""

from __future__ import annotations

import random
import threading

__all__ = ["InFlightLimiter", "MirrorDecider"]


class MirrorDecider:
    """Decides whether a request is mirrored: with probability ``fraction``.

    Args:
        fraction: share of requests to mirror, in [0, 1].
        rng: random source; inject a seeded ``random.Random`` in tests.
    """

    def __init__(self, fraction: float, rng: random.Random | None = None):
        if not 0 <= fraction <= 1:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        self.fraction = fraction
        self._rng = rng or random.Random()

    def should_mirror(self) -> bool:
        """True for about ``fraction`` of calls (never for 0, always for 1)."""
        return self.fraction >= 1 or self._rng.random() < self.fraction

    def __repr__(self) -> str:
        return f"MirrorDecider(fraction={self.fraction})"


class InFlightLimiter:
    """Bounds concurrent shadow calls; a call that does not fit is dropped and counted.

    Thread-safe. Every successful :meth:`try_acquire` must be paired with one :meth:`release`.

    Args:
        limit: most calls in flight at once (0 drops everything).
    """

    def __init__(self, limit: int):
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.limit = limit
        self.in_flight = 0
        self.started = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        """Take a slot if one is free; otherwise count a drop and return False."""
        with self._lock:
            if self.in_flight >= self.limit:
                self.dropped += 1
                return False
            self.in_flight += 1
            self.started += 1
            return True

    def release(self) -> None:
        """Give back a slot taken by :meth:`try_acquire`."""
        with self._lock:
            if self.in_flight == 0:
                raise RuntimeError("release() without a matching try_acquire()")
            self.in_flight -= 1

    def stats(self) -> dict[str, int]:
        """``limit``, ``in_flight``, ``started`` and ``dropped``."""
        with self._lock:
            return {
                "limit": self.limit,
                "in_flight": self.in_flight,
                "started": self.started,
                "dropped": self.dropped,
            }

    def __repr__(self) -> str:
        return f"InFlightLimiter(limit={self.limit}, in_flight={self.in_flight})"
