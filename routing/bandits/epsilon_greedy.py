"""Epsilon-greedy: play the best mean so far, explore a random arm with a decaying probability."""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from routing.bandits._base import Context, CountSumBandit

__all__ = ["EpsilonGreedy"]


class EpsilonGreedy(CountSumBandit):
    """Epsilon-greedy with the schedule ``eps_t = max(min_epsilon, epsilon / (1 + decay * t))``.

    ``t`` is the number of rewards learnt from. Arms never rewarded are played first.

    Args:
        n_arms: number of arms.
        rng: random source.
        epsilon: exploration probability at the start, in [0, 1].
        decay: how fast exploration decays (0 keeps it constant).
        min_epsilon: floor of the exploration probability.
        discount: forgetting factor in (0, 1] (see :class:`~routing.bandits.Bandit`).
    """

    algorithm = "epsilon_greedy"

    def __init__(
        self,
        n_arms: int,
        rng: random.Random | None = None,
        *,
        epsilon: float = 0.1,
        decay: float = 0.0,
        min_epsilon: float = 0.0,
        discount: float = 1.0,
    ):
        if not 0 <= epsilon <= 1 or not 0 <= min_epsilon <= 1:
            raise ValueError(
                f"epsilon and min_epsilon must be in [0, 1], got {epsilon}, {min_epsilon}"
            )
        if decay < 0:
            raise ValueError(f"decay must be >= 0, got {decay}")
        self.epsilon = epsilon
        self.decay = decay
        self.min_epsilon = min_epsilon
        super().__init__(n_arms, rng, discount=discount)

    def params(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "decay": self.decay, "min_epsilon": self.min_epsilon}

    @property
    def current_epsilon(self) -> float:
        """The exploration probability now."""
        return max(self.min_epsilon, self.epsilon / (1 + self.decay * self.steps))

    def choose(self, context: Context = None) -> int:
        n, s = self.stats["n"], self.stats["sum"]
        if self._rng.random() < self.current_epsilon:
            return self._rng.randrange(self.n_arms)
        with np.errstate(divide="ignore", invalid="ignore"):
            means = np.where(n > 0, s / np.where(n > 0, n, 1), np.inf)
        return self._argmax(means)
