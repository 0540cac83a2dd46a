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

from nodes.errors import RequestValidationError
from routing.bandits._base import Bandit, Context, NonFiniteStateError

__all__ = ["LinUCB", "check_context", "features_from_payload"]


def features_from_payload(
    payload: Mapping[str, Any],
    fields: Sequence[str],
    *,
    intercept: bool = True,
    bounds: tuple[float, float] | None = None,
    prefix: str = "",
) -> list[float]:
    """The feature vector of a request: ``[1.0]`` (if ``intercept``) then each field's value.

    Args:
        payload: the request payload (JSON object).
        fields: payload fields holding numbers (dots reach into nested objects); booleans
            count as 0/1.
        intercept: prepend a constant 1 so each arm also learns a bias.
        bounds: ``(low, high)`` every value must lie in (``LinUCBConfig.feature_range``).
        prefix: put before a field's path in errors (``"inputs."`` names the field of the
            ``/predict`` body).

    Raises:
        RequestValidationError: a field is missing, not a finite number or out of ``bounds``
            (HTTP 422).
    """
    values = [1.0] if intercept else []
    for path in fields:
        value: Any = payload
        for part in path.split("."):
            if not isinstance(value, Mapping) or part not in value:
                raise RequestValidationError(
                    prefix + path, "missing; the contextual router needs it"
                )
            value = value[part]
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RequestValidationError(prefix + path, f"must be a finite number, got {value!r}")
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise RequestValidationError(
                prefix + path,
                f"must be in [{bounds[0]:g}, {bounds[1]:g}] (the router's feature_range), "
                f"got {value!r}",
            )
        values.append(float(value))
    return values


def check_context(
    context: Any, fields: Sequence[str], *, intercept: bool, bounds: tuple[float, float]
) -> list[float]:
    """A decision's context as :func:`features_from_payload` builds it, checked again (it comes
    back in a feedback token: signed, but the bounds may have tightened since).

    Raises:
        ValueError: wrong length, a non-finite value, a bad intercept, or a feature out of
            ``bounds``; the message names the feature.
    """
    dim = len(fields) + int(intercept)
    if not isinstance(context, (list, tuple)) or len(context) != dim:
        raise ValueError(f"decision context must be {dim} numbers, got {context!r}")
    values = []
    for x in context:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise ValueError(f"decision context must hold finite numbers, got {x!r}")
        values.append(float(x))
    if intercept and values[0] != 1.0:
        raise ValueError(f"decision context must start with the intercept 1, got {values[0]!r}")
    for path, x in zip(fields, values[int(intercept) :]):
        if not bounds[0] <= x <= bounds[1]:
            raise ValueError(
                f"decision context feature {path!r} must be in [{bounds[0]:g}, {bounds[1]:g}], "
                f"got {x!r}"
            )
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

    def _check_stats(self, stats: Mapping[str, np.ndarray]) -> None:
        super()._check_stats(stats)
        # choose() needs every arm's (ridge * I + A)^-1: refuse statistics it cannot invert.
        try:
            inverse = np.linalg.inv(stats["A"] + self.ridge * np.eye(self.dim))
        except np.linalg.LinAlgError:
            raise NonFiniteStateError("linucb matrix A would be singular; refused") from None
        if not np.all(np.isfinite(inverse)):
            raise NonFiniteStateError("linucb matrix A would have a non-finite inverse; refused")

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
