"""LinUCB (disjoint): a contextual bandit whose arms' rewards are linear in numeric features.

The features come from the request payload (:func:`features_from_payload`) and travel in the
feedback token with the decision, so the delayed reward updates the model on the same vector.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from graphs.errors import RequestValidationError
from routing.bandits._base import Bandit, Context

__all__ = ["LinUCB", "features_from_payload"]


def features_from_payload(
    payload: Mapping[str, Any], fields: Sequence[str], *, intercept: bool = True
) -> list[float]:
    """The feature vector of a request: ``[1.0]`` (if ``intercept``) then each field's value.

    Args:
        payload: the request payload (JSON object).
        fields: payload fields holding numbers (dots reach into nested objects); booleans
            count as 0/1.
        intercept: prepend a constant 1 so each arm also learns a bias.

    Raises:
        RequestValidationError: a field is missing or not a finite number (HTTP 422).
    """
    values = [1.0] if intercept else []
    for path in fields:
        value: Any = payload
        for part in path.split("."):
            if not isinstance(value, Mapping) or part not in value:
                raise RequestValidationError(path, "missing; the contextual router needs it")
            value = value[part]
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RequestValidationError(path, f"must be a finite number, got {value!r}")
        values.append(float(value))
    return values


class LinUCB(Bandit):
    """Disjoint LinUCB (Li et al. 2010) with ridge regression per arm.

    Arm ``i`` keeps ``A_i = sum x x^T`` and ``b_i = sum r x``; with ``M_i = ridge * I + A_i``
    and ``theta_i = M_i^-1 b_i`` it scores ``theta_i . x + alpha * sqrt(x^T M_i^-1 x)``. The
    ridge term is not discounted, so ``M_i`` stays invertible whatever the discount.

    Args:
        n_arms: number of arms.
        rng: random source (tie-breaking only).
        dim: length of the feature vectors.
        alpha: exploration weight of the confidence width.
        ridge: ridge regularisation (> 0).
        discount: forgetting factor in (0, 1].
    """

    algorithm = "linucb"

    def __init__(
        self,
        n_arms: int,
        rng: random.Random | None = None,
        *,
        dim: int,
        alpha: float = 1.0,
        ridge: float = 1.0,
        discount: float = 1.0,
    ):
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if not alpha >= 0 or not ridge > 0:
            raise ValueError(f"alpha must be >= 0 and ridge > 0, got {alpha}, {ridge}")
        self.dim = dim
        self.alpha = alpha
        self.ridge = ridge
        self._inverse: np.ndarray | None = None
        super().__init__(n_arms, rng, discount=discount)

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        k, d = self.n_arms, self.dim
        return {"A": (k, d, d), "b": (k, d), "n": (k,), "sum": (k,)}

    def _context(self, context: Context) -> np.ndarray:
        if context is None:
            raise ValueError(f"linucb needs a context of {self.dim} numbers")
        x = np.asarray(context, dtype=float)
        if x.shape != (self.dim,) or not np.all(np.isfinite(x)):
            raise ValueError(f"context must be {self.dim} finite numbers, got {list(context)}")
        return x

    def _observe(
        self, arm: int, reward: float, context: np.ndarray | None, into: dict[str, np.ndarray]
    ) -> None:
        if context is None:  # pragma: no cover - _context() never returns None here
            raise ValueError("linucb needs a context")
        into["A"][arm] += np.outer(context, context)
        into["b"][arm] += reward * context
        into["n"][arm] += 1
        into["sum"][arm] += reward

    def _changed(self) -> None:
        self._inverse = None

    def params(self) -> dict[str, Any]:
        return {"dim": self.dim, "alpha": self.alpha, "ridge": self.ridge}

    def _inverses(self) -> np.ndarray:
        if self._inverse is None:
            eye = self.ridge * np.eye(self.dim)
            self._inverse = np.linalg.inv(self.stats["A"] + eye)
        return self._inverse

    def theta(self) -> np.ndarray:
        """Each arm's ridge-regression coefficients, shape ``(n_arms, dim)``."""
        return np.einsum("kij,kj->ki", self._inverses(), self.stats["b"])

    def choose(self, context: Context = None) -> int:
        x = self._context(context)
        inverses = self._inverses()
        means = self.theta() @ x
        widths = np.sqrt(np.maximum(np.einsum("i,kij,j->k", x, inverses, x), 0.0))
        return self._argmax(means + self.alpha * widths)
