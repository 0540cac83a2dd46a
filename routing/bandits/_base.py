"""The machinery every bandit shares: discounted sufficient statistics, deltas and snapshots.

A policy's state is a few arrays of sufficient statistics (counts, reward sums, ...) that are
linear in the observations. That makes three things simple and exact:

- Forgetting: with a discount ``g`` in (0, 1], each update first multiplies every statistic by
  ``g`` (arms whose quality drifts are judged on recent rewards; ``g = 1`` forgets nothing).
- Batched sync: a replica records its updates into a pending :class:`BanditDelta` as well as into
  its own view (``D <- g * D + x``, ``k`` updates). The authoritative state folds a delta in with
  ``S <- g**k * S + D``, which equals applying the ``k`` updates one by one.
- Snapshots: :meth:`Bandit.to_dict` is plain JSON; :meth:`Bandit.from_dict` rebuilds any policy.

Protocol (replica ``r``, authoritative state ``A``)::

    arm = r.choose(context)              # local, no remote call
    r.update(arm, reward, context)       # when feedback arrives; also recorded as pending
    delta = r.take_delta()               # every sync period: ship it (delta.to_dict())
    A.apply(delta); state = A.to_dict()  # in the shared-state actor
    r.sync(state)                        # global view + whatever was recorded since take_delta
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

__all__ = ["Bandit", "BanditDelta", "Context"]

#: A context (feature vector) for contextual policies; the others ignore it.
Context = Sequence[float] | None
SNAPSHOT_VERSION = 1
_REGISTRY: dict[str, type[Bandit]] = {}


@dataclass
class BanditDelta:
    """Updates one replica recorded since its last sync.

    Attributes:
        algorithm: the policy it belongs to (checked by :meth:`Bandit.apply`).
        discount: the policy's discount factor.
        steps: number of updates in the delta.
        stats: discounted sums of the updates' contributions, per statistic.
    """

    algorithm: str
    discount: float
    steps: int
    stats: dict[str, np.ndarray]

    @property
    def empty(self) -> bool:
        """True when it holds no update (no need to send it)."""
        return self.steps == 0

    def merge(self, later: BanditDelta) -> None:
        """Append a delta recorded after this one (both from the same policy)."""
        _check_compatible(self.algorithm, self.stats, later)
        factor = self.discount**later.steps
        for name, value in later.stats.items():
            self.stats[name] = factor * self.stats[name] + value
        self.steps += later.steps

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "algorithm": self.algorithm,
            "discount": self.discount,
            "steps": self.steps,
            "stats": {name: value.tolist() for name, value in self.stats.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BanditDelta:
        """Rebuild from :meth:`to_dict`'s output."""
        stats = {name: np.asarray(v, dtype=float) for name, v in data["stats"].items()}
        return cls(str(data["algorithm"]), float(data["discount"]), int(data["steps"]), stats)


def _check_compatible(algorithm: str, stats: Mapping[str, np.ndarray], delta: BanditDelta) -> None:
    if delta.algorithm != algorithm:
        raise ValueError(f"cannot apply a {delta.algorithm} delta to a {algorithm} policy")
    shapes = {n: v.shape for n, v in stats.items()}
    got = {n: np.shape(v) for n, v in delta.stats.items()}
    if got != shapes:
        raise ValueError(f"delta statistics {got} do not match the policy's {shapes}")


class Bandit(ABC):
    """Base of the bandit policies: choose an arm, learn from rewards, sync in batches.

    Subclasses define ``algorithm``, the statistics' shapes (:meth:`_shapes`), how one
    observation adds to them (:meth:`_observe`), :meth:`choose` and :meth:`params`.

    Args:
        n_arms: number of arms (>= 1).
        rng: random source; inject a seeded ``random.Random`` for exact tests.
        discount: factor in (0, 1] applied to every statistic before each update.
    """

    algorithm: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "algorithm" in cls.__dict__:
            _REGISTRY[cls.algorithm] = cls

    def __init__(self, n_arms: int, rng: random.Random | None = None, *, discount: float = 1.0):
        if n_arms < 1:
            raise ValueError(f"n_arms must be >= 1, got {n_arms}")
        if not 0 < discount <= 1:
            raise ValueError(f"discount must be in (0, 1], got {discount}")
        self.n_arms = n_arms
        self.discount = discount
        self._rng = rng or random.Random()
        self.stats = self._zeros()
        #: Updates folded in so far (undiscounted): ours plus every applied delta's.
        self.steps = 0
        self._pending = self._zeros()
        self._pending_steps = 0

    # --- what subclasses define ------------------------------------------------------------

    @abstractmethod
    def _shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each sufficient statistic."""

    @abstractmethod
    def _observe(
        self, arm: int, reward: float, context: np.ndarray | None, into: dict[str, np.ndarray]
    ) -> None:
        """Add one observation's contribution to the statistics ``into``."""

    @abstractmethod
    def choose(self, context: Context = None) -> int:
        """Index of the arm to play for the next request."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Hyper-parameters (constructor keyword arguments other than ``discount``)."""

    def _changed(self) -> None:
        """Called after the statistics change (subclasses drop caches here)."""
        return

    def _context(self, context: Context) -> np.ndarray | None:
        """Validate a context; non-contextual policies ignore it."""
        return None

    # --- learning --------------------------------------------------------------------------

    def update(self, arm: int, reward: float, context: Context = None) -> None:
        """Learn from one reward for ``arm`` (chosen on ``context`` for contextual policies).

        The update is applied to this policy's statistics and recorded in its pending delta.
        """
        if isinstance(arm, bool) or not isinstance(arm, (int, np.integer)):
            raise ValueError(f"arm must be an integer, got {arm!r}")
        if not 0 <= arm < self.n_arms:
            raise ValueError(f"arm must be in [0, {self.n_arms}), got {arm}")
        if not math.isfinite(reward):
            raise ValueError(f"reward must be a finite number, got {reward}")
        self._check_reward(reward)
        x = self._context(context)
        for target in (self.stats, self._pending):
            if self.discount < 1:
                for value in target.values():
                    value *= self.discount
            self._observe(int(arm), float(reward), x, target)
        self.steps += 1
        self._pending_steps += 1
        self._changed()

    def _check_reward(self, reward: float) -> None:
        """Reject rewards outside the policy's range (subclasses narrow it)."""
        return

    def take_delta(self) -> BanditDelta:
        """The updates recorded since the last call, to send to the authoritative state."""
        delta = BanditDelta(self.algorithm, self.discount, self._pending_steps, self._pending)
        self._pending = self._zeros()
        self._pending_steps = 0
        return delta

    def apply(self, delta: BanditDelta) -> None:
        """Fold a replica's delta in (``S <- discount**steps * S + D``)."""
        _check_compatible(self.algorithm, self.stats, delta)
        if delta.discount != self.discount:
            raise ValueError(f"delta discount {delta.discount} != policy's {self.discount}")
        factor = self.discount**delta.steps
        for name, value in delta.stats.items():
            self.stats[name] = factor * self.stats[name] + np.asarray(value, dtype=float)
        self.steps += delta.steps
        self._changed()

    def sync(self, state: Mapping[str, Any]) -> None:
        """Adopt the authoritative state (:meth:`to_dict`), keeping updates not yet sent."""
        other = type(self).from_dict(state)
        if other.algorithm != self.algorithm or other.n_arms != self.n_arms:
            raise ValueError(
                f"state is {other.algorithm} with {other.n_arms} arms; this policy is "
                f"{self.algorithm} with {self.n_arms}"
            )
        self.stats = other.stats
        self.steps = other.steps
        pending = BanditDelta(
            self.algorithm,
            self.discount,
            self._pending_steps,
            {n: v.copy() for n, v in self._pending.items()},
        )
        self.apply(pending)

    # --- helpers ---------------------------------------------------------------------------

    def _zeros(self) -> dict[str, np.ndarray]:
        return {name: np.zeros(shape) for name, shape in self._shapes().items()}

    def _argmax(self, scores: np.ndarray) -> int:
        """Index of the best score, ties broken at random."""
        best = np.flatnonzero(scores == scores.max())
        return int(best[0]) if len(best) == 1 else int(self._rng.choice(list(best)))

    def means(self) -> list[float | None]:
        """Mean reward of each arm so far (None for arms never rewarded)."""
        n, s = self.stats["n"], self.stats["sum"]
        return [float(s[i] / n[i]) if n[i] > 0 else None for i in range(self.n_arms)]

    def summary(self) -> dict[str, Any]:
        """A view for ``GET /<graph>/graph``: algorithm, parameters, counts and means."""
        return {
            "algorithm": self.algorithm,
            "params": self.params(),
            "discount": self.discount,
            "steps": self.steps,
            "counts": self.stats["n"].tolist(),
            "means": self.means(),
        }

    # --- snapshots -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON state: algorithm, parameters and statistics (pending updates excluded)."""
        return {
            "version": SNAPSHOT_VERSION,
            "algorithm": self.algorithm,
            "n_arms": self.n_arms,
            "discount": self.discount,
            "params": self.params(),
            "steps": self.steps,
            "stats": {name: value.tolist() for name, value in self.stats.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], rng: random.Random | None = None) -> Bandit:
        """Rebuild a policy (of the class ``data["algorithm"]`` names) from :meth:`to_dict`."""
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(
                f"unsupported bandit snapshot version {data.get('version')!r} "
                f"(expected {SNAPSHOT_VERSION})"
            )
        algorithm = data.get("algorithm")
        if algorithm not in _REGISTRY:
            raise ValueError(f"unknown bandit algorithm {algorithm!r}; known: {sorted(_REGISTRY)}")
        policy_cls = _REGISTRY[str(algorithm)]
        if not issubclass(policy_cls, cls):
            raise ValueError(f"snapshot is a {algorithm} policy, not a {cls.__name__}")
        policy = policy_cls(
            int(data["n_arms"]), rng, discount=float(data["discount"]), **data["params"]
        )
        stats = {name: np.asarray(v, dtype=float) for name, v in data["stats"].items()}
        shapes = {n: v.shape for n, v in policy.stats.items()}
        if {n: v.shape for n, v in stats.items()} != shapes:
            raise ValueError(f"snapshot statistics do not have the shapes {shapes}")
        policy.stats = stats
        policy.steps = int(data["steps"])
        policy._changed()
        return policy

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        extra = f", {params}" if params else ""
        return f"{type(self).__name__}(n_arms={self.n_arms}{extra}, discount={self.discount})"


class CountSumBandit(Bandit):
    """A bandit whose statistics are, per arm, a reward count ``n`` and a reward sum ``sum``."""

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        return {"n": (self.n_arms,), "sum": (self.n_arms,)}

    def _observe(
        self, arm: int, reward: float, context: np.ndarray | None, into: dict[str, np.ndarray]
    ) -> None:
        into["n"][arm] += 1
        into["sum"][arm] += reward
