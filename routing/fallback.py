"""What a request gets when the router's policy fails to choose an arm.

A bandit whose statistics it cannot use, or a split whose weights went bad, must not fail every
request until an operator resets the router: :class:`StaticFallback` serves the request with the
router's configured split instead, counts it and logs it.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable

from routing.ab import StickyAB
from routing.spec import RouterNode

__all__ = ["FALLBACK_LOG_INTERVAL_S", "StaticFallback"]

log = logging.getLogger(__name__)
#: Seconds between two log lines about fallbacks (a broken policy fails every request).
FALLBACK_LOG_INTERVAL_S = 10.0


class StaticFallback:
    """The router's static split: the arms' configured weights (an equal split when they have
    none, as bandit arms), or for a canary its stable arm, since a candidate must get no traffic
    it was not ramped to. Sticky A/B keys keep their arm.

    Each use is counted (:attr:`count`, and :attr:`unsent` until the replica's next sync) and
    logged with the request id, at most once every ``log_interval_s``; the next line says how
    many fallbacks it did not log.

    Args:
        spec: the router node.
        rng: random source of the split.
        clock: monotonic clock for the log interval.
        log_interval_s: least time between two log lines.
    """

    def __init__(
        self,
        spec: RouterNode,
        rng: random.Random,
        clock: Callable[[], float],
        log_interval_s: float = FALLBACK_LOG_INTERVAL_S,
    ):
        self.spec = spec
        self.labels = [arm.label for arm in spec.arms]
        self.split = StickyAB(
            [1.0, 0.0] if spec.canary is not None else spec.weights(),
            rng,
            arm_ids=self.labels,
            salt=spec.ab.salt if spec.ab is not None else "",
        )
        self.count = 0
        self.unsent = 0
        self._clock = clock
        self._interval = log_interval_s
        self._logged_at = -math.inf
        self._unlogged = 0

    def choose(self, key: str | None, request_id: str | None, exc: BaseException) -> int:
        """The static split's arm for a request the policy failed on (``exc``)."""
        arm = self.split.choose(key)
        self.count += 1
        self.unsent += 1
        now = self._clock()
        if now - self._logged_at < self._interval:
            self._unlogged += 1
            return arm
        more = f" ({self._unlogged} more since the last line)" if self._unlogged else ""
        log.error(
            "router %s: %s policy failed to choose for request %s (%r); served arm %s with the "
            "static split%s",
            self.spec.name,
            self.spec.policy,
            request_id,
            exc,
            self.labels[arm],
            more,
        )
        self._logged_at, self._unlogged = now, 0
        return arm

    def take_unsent(self) -> int:
        """Fallbacks since the last call (for the replica's next delta)."""
        unsent, self.unsent = self.unsent, 0
        return unsent

    def __repr__(self) -> str:
        return f"StaticFallback(router={self.spec.name!r}, count={self.count})"
