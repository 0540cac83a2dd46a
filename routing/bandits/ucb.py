"""UCB1: play the arm with the highest upper confidence bound on its mean reward."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np

from routing.bandits._base import Context, CountSumBandit

__all__ = ["UCB1"]


class UCB1(CountSumBandit):
    """UCB1 (Auer et al. 2002): score ``mean + sqrt(exploration * ln(N) / n)``.

    Meant for rewards in [0, 1]. Arms never rewarded score infinity and are played first; ties
    are broken at random. With a discount < 1 it is discounted UCB (counts decay too). Note that
    UCB1 is deterministic between updates: with delayed rewards, every request until the next
    update goes to the same arm (Thompson sampling spreads them).

    Args:
        n_arms: number of arms.
        rng: random source (tie-breaking only).
        exploration: the constant under the square root (2 is the classic UCB1).
        discount: forgetting factor in (0, 1].
    """

    algorithm = "ucb1"

    def __init__(
        self,
        n_arms: int,
        rng: random.Random | None = None,
        *,
        exploration: float = 2.0,
        discount: float = 1.0,
    ):
        if not exploration >= 0:
            raise ValueError(f"exploration must be >= 0, got {exploration}")
        self.exploration = exploration
        super().__init__(n_arms, rng, discount=discount)

    def params(self) -> dict[str, Any]:
        return {"exploration": self.exploration}

    def choose(self, context: Context = None) -> int:
        n, s = self.stats["n"], self.stats["sum"]
        log_total = math.log(max(float(n.sum()), 1.0))
        safe = np.where(n > 0, n, 1.0)
        scores = np.where(n > 0, s / safe + np.sqrt(self.exploration * log_total / safe), np.inf)
        return self._argmax(scores)
