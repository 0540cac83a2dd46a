"""Weighted random split: the simplest router policy, pure and seedable."""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Sequence


class WeightedRandom:
    """Chooses arm ``i`` with probability ``weights[i]``.

    Args:
        weights: non-negative arm weights (normalised here).
        rng: the random source; inject a seeded ``random.Random`` for exact tests.
    """

    def __init__(self, weights: Sequence[float], rng: random.Random | None = None):
        total = float(sum(weights))
        if (
            not weights
            or not math.isfinite(total)
            or total <= 0
            or any(w < 0 or not math.isfinite(w) for w in weights)
        ):
            raise ValueError(f"weights must be >= 0 with a positive sum, got {list(weights)}")
        self.weights = [w / total for w in weights]
        self._cumulative = list(itertools.accumulate(self.weights))
        self._rng = rng or random.Random()

    def choose(self) -> int:
        """Index of the arm for the next request."""
        x = self._rng.random() * self._cumulative[-1]
        return min(bisect.bisect_right(self._cumulative, x), len(self.weights) - 1)

    def __repr__(self) -> str:
        return f"WeightedRandom(weights={self.weights})"
