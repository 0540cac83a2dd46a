"""Thompson sampling: play the arm whose reward sampled from its posterior is highest.

- :class:`ThompsonBeta`: Beta-Bernoulli, for 0/1 rewards (fractions in [0, 1] count as
  fractional successes).
- :class:`ThompsonGaussian`: Normal with unknown mean and variance (Normal-Inverse-Gamma prior),
  for real-valued rewards.

Sampling keeps exploring between updates, so delayed and batched rewards do it little harm.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

import numpy as np

from routing.bandits._base import Bandit, Context, NonFiniteStateError

__all__ = ["ThompsonBeta", "ThompsonGaussian"]


class ThompsonBeta(Bandit):
    """Beta-Bernoulli Thompson sampling: arm ``i`` samples ``Beta(a0 + s_i, b0 + n_i - s_i)``.

    Args:
        n_arms: number of arms.
        rng: random source.
        prior_alpha: ``a0``, prior successes (> 0).
        prior_beta: ``b0``, prior failures (> 0).
        discount: forgetting factor in (0, 1]; the prior is never forgotten.
    """

    algorithm = "thompson_beta"

    def __init__(
        self,
        n_arms: int,
        rng: random.Random | None = None,
        *,
        prior_alpha: float = 1.0,
        prior_beta: float = 1.0,
        discount: float = 1.0,
    ):
        if not (prior_alpha > 0 and prior_beta > 0):
            raise ValueError(f"priors must be > 0, got alpha={prior_alpha}, beta={prior_beta}")
        self.prior_alpha = prior_alpha
        self.prior_beta = prior_beta
        super().__init__(n_arms, rng, discount=discount)

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        return {"n": (self.n_arms,), "sum": (self.n_arms,)}

    def _check_reward(self, reward: float) -> None:
        if not 0 <= reward <= 1:
            raise ValueError(f"thompson_beta rewards must be in [0, 1], got {reward}")

    def _observe(
        self, arm: int, reward: float, context: np.ndarray | None, into: dict[str, np.ndarray]
    ) -> None:
        into["n"][arm] += 1
        into["sum"][arm] += reward

    def params(self) -> dict[str, Any]:
        return {"prior_alpha": self.prior_alpha, "prior_beta": self.prior_beta}

    def posterior(self, arm: int) -> tuple[float, float]:
        """``(alpha, beta)`` of the arm's Beta posterior."""
        n, s = float(self.stats["n"][arm]), float(self.stats["sum"][arm])
        return self.prior_alpha + max(s, 0.0), self.prior_beta + max(n - s, 0.0)

    def choose(self, context: Context = None) -> int:
        draws = [self._rng.betavariate(*self.posterior(i)) for i in range(self.n_arms)]
        return self._argmax(np.asarray(draws))


class ThompsonGaussian(Bandit):
    """Gaussian Thompson sampling with a Normal-Inverse-Gamma prior on (mean, variance).

    Posterior after ``n`` rewards with mean ``m`` and squared deviations ``q``:
    ``k = k0 + n``, ``mu = (k0 * mu0 + n * m) / k``, ``a = a0 + n / 2``,
    ``b = b0 + q / 2 + k0 * n * (m - mu0)**2 / (2 * k)``; a draw takes ``var ~ InvGamma(a, b)``
    then ``mean ~ N(mu, var / k)``. Scale the prior to the rewards (``b0 / a0`` is a prior guess
    of the variance).

    Args:
        n_arms: number of arms.
        rng: random source.
        prior_mean: ``mu0``.
        prior_count: ``k0``, how many rewards the prior mean is worth (> 0).
        prior_shape: ``a0`` (> 0).
        prior_scale: ``b0`` (> 0).
        discount: forgetting factor in (0, 1].
    """

    algorithm = "thompson_gaussian"

    def __init__(
        self,
        n_arms: int,
        rng: random.Random | None = None,
        *,
        prior_mean: float = 0.0,
        prior_count: float = 1.0,
        prior_shape: float = 1.0,
        prior_scale: float = 1.0,
        discount: float = 1.0,
    ):
        if not (prior_count > 0 and prior_shape > 0 and prior_scale > 0):
            raise ValueError(
                "prior_count, prior_shape and prior_scale must be > 0, got "
                f"{prior_count}, {prior_shape}, {prior_scale}"
            )
        if not math.isfinite(prior_mean):
            raise ValueError(f"prior_mean must be finite, got {prior_mean}")
        self.prior_mean = prior_mean
        self.prior_count = prior_count
        self.prior_shape = prior_shape
        self.prior_scale = prior_scale
        super().__init__(n_arms, rng, discount=discount)

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        return {"n": (self.n_arms,), "sum": (self.n_arms,), "sumsq": (self.n_arms,)}

    def _observe(
        self, arm: int, reward: float, context: np.ndarray | None, into: dict[str, np.ndarray]
    ) -> None:
        into["n"][arm] += 1
        into["sum"][arm] += reward
        into["sumsq"][arm] += reward * reward

    def params(self) -> dict[str, Any]:
        return {
            "prior_mean": self.prior_mean,
            "prior_count": self.prior_count,
            "prior_shape": self.prior_shape,
            "prior_scale": self.prior_scale,
        }

    def posterior(self, arm: int) -> tuple[float, float, float, float]:
        """``(mu, k, a, b)`` of the arm's Normal-Inverse-Gamma posterior."""
        return self._posterior(self.stats, arm)

    def _check_stats(self, stats: Mapping[str, np.ndarray]) -> None:
        super()._check_stats(stats)
        # Finite sums can still overflow in the posterior (n * mean**2): check what choose() uses.
        for arm in range(self.n_arms):
            try:
                mu, k, a, b = self._posterior(stats, arm)
                usable = math.isfinite(mu) and all(math.isfinite(x) and x > 0 for x in (k, a, b))
            except (OverflowError, ZeroDivisionError):
                usable = False
            if not usable:
                raise NonFiniteStateError(
                    f"thompson_gaussian posterior of arm {arm} would be non-finite; refused"
                )

    def _posterior(
        self, stats: Mapping[str, np.ndarray], arm: int
    ) -> tuple[float, float, float, float]:
        n = float(stats["n"][arm])
        s, ss = float(stats["sum"][arm]), float(stats["sumsq"][arm])
        k0, mu0 = self.prior_count, self.prior_mean
        mean = s / n if n > 0 else 0.0
        squares = max(ss - n * mean * mean, 0.0)  # guards float cancellation
        k = k0 + n
        mu = (k0 * mu0 + s) / k
        a = self.prior_shape + n / 2
        b = self.prior_scale + squares / 2 + k0 * n * (mean - mu0) ** 2 / (2 * k)
        return mu, k, a, b

    def choose(self, context: Context = None) -> int:
        draws = []
        for i in range(self.n_arms):
            mu, k, a, b = self.posterior(i)
            variance = b / self._rng.gammavariate(a, 1.0)
            draws.append(self._rng.gauss(mu, math.sqrt(variance / k)))
        return self._argmax(np.asarray(draws))
