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

Poisoning: an update, a delta or a loaded state that would leave any statistic non-finite (or a
policy unable to decide on it, e.g. a singular LinUCB matrix) is refused with
:class:`NonFiniteStateError` and changes nothing, so one absurd reward cannot break every later
decision. Rewards are range-checked further up (the router's configured ``reward_range``).
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

__all__ = ["Bandit", "BanditDelta", "Context", "NonFiniteStateError", "StagedUpdate"]

#: A context (feature vector) for contextual policies; the others ignore it.
Context = Sequence[float] | None
SNAPSHOT_VERSION = 1
_REGISTRY: dict[str, type[Bandit]] = {}


class NonFiniteStateError(ValueError):
    """An update, delta or loaded state would leave a policy's statistics non-finite (or unusable,
    e.g. a singular LinUCB matrix); the policy is left unchanged."""


@dataclass(frozen=True)
class StagedUpdate:
    """Updates computed and checked by :meth:`Bandit.stage` but not yet applied.

    Attributes:
        stats: the statistics after the updates.
        pending: the pending delta's statistics after the updates.
        count: how many updates it holds.
        base_steps: the policy's ``steps`` it was computed from (commit checks it is unchanged).
    """

    stats: dict[str, np.ndarray]
    pending: dict[str, np.ndarray]
    count: int
    base_steps: int


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

        Raises:
            ValueError: a bad arm, reward or context.
            NonFiniteStateError: the update would make a statistic non-finite; nothing changed.
        """
        self.commit(self.stage([(arm, reward, context)]))

    def stage(self, updates: Iterable[tuple[int, float, Context]]) -> StagedUpdate:
        """Compute and check ``(arm, reward, context)`` updates without applying them, so that a
        caller can apply several updates, and other changes, all or nothing.

        Raises:
            ValueError: a bad arm, reward or context.
            NonFiniteStateError: the updates would make a statistic non-finite.
        """
        checked = []
        for arm, reward, context in updates:
            if isinstance(arm, bool) or not isinstance(arm, (int, np.integer)):
                raise ValueError(f"arm must be an integer, got {arm!r}")
            if not 0 <= arm < self.n_arms:
                raise ValueError(f"arm must be in [0, {self.n_arms}), got {arm}")
            try:
                value = float(reward)
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise ValueError(f"reward must be a finite number, got {reward!r}")
            self._check_reward(value)
            checked.append((int(arm), value, self._context(context)))
        stats = {n: v.copy() for n, v in self.stats.items()}
        pending = {n: v.copy() for n, v in self._pending.items()}
        # Overflow is not an error here but a result _check_stats refuses.
        with np.errstate(over="ignore", invalid="ignore"):
            for arm, reward, x in checked:
                for target in (stats, pending):
                    if self.discount < 1:
                        for array in target.values():
                            array *= self.discount
                    self._observe(arm, reward, x, target)
            self._check_stats(stats)
            self._check_stats(pending)
        return StagedUpdate(stats, pending, len(checked), self.steps)

    def commit(self, staged: StagedUpdate) -> None:
        """Apply updates :meth:`stage` computed; the policy must not have changed since."""
        if staged.base_steps != self.steps:
            raise RuntimeError("the policy changed between stage() and commit(); stage again")
        self.stats, self._pending = staged.stats, staged.pending
        self.steps += staged.count
        self._pending_steps += staged.count
        self._changed()

    def _check_reward(self, reward: float) -> None:
        """Reject rewards outside the policy's range (subclasses narrow it)."""
        return

    def _check_stats(self, stats: Mapping[str, np.ndarray]) -> None:
        """Raise :class:`NonFiniteStateError` unless the policy can decide on ``stats``.

        Subclasses extend it with what they derive from the statistics (a posterior, an inverse).
        """
        for name, value in stats.items():
            bad = np.flatnonzero(~np.isfinite(np.asarray(value, dtype=float)))
            if len(bad):
                raise NonFiniteStateError(
                    f"{self.algorithm} statistic {name!r} would be non-finite "
                    f"(entry {int(bad[0])}); refused"
                )

    def take_delta(self) -> BanditDelta:
        """The updates recorded since the last call, to send to the authoritative state."""
        delta = BanditDelta(self.algorithm, self.discount, self._pending_steps, self._pending)
        self._pending = self._zeros()
        self._pending_steps = 0
        return delta

    def apply(self, delta: BanditDelta) -> None:
        """Fold a replica's delta in (``S <- discount**steps * S + D``).

        Raises:
            ValueError: the delta belongs to another policy or discount.
            NonFiniteStateError: the result would be non-finite; nothing changed.
        """
        _check_compatible(self.algorithm, self.stats, delta)
        if delta.discount != self.discount:
            raise ValueError(f"delta discount {delta.discount} != policy's {self.discount}")
        self.stats = self._folded(self.stats, delta)
        self.steps += delta.steps
        self._changed()

    def _folded(self, stats: Mapping[str, np.ndarray], delta: BanditDelta) -> dict[str, np.ndarray]:
        """``discount**steps * stats + delta``, checked."""
        factor = self.discount**delta.steps
        with np.errstate(over="ignore", invalid="ignore"):
            out = {n: factor * stats[n] + np.asarray(delta.stats[n], dtype=float) for n in stats}
            self._check_stats(out)
        return out

    def sync(self, state: Mapping[str, Any]) -> None:
        """Adopt the authoritative state (:meth:`to_dict`), keeping updates not yet sent.

        Raises:
            NonFiniteStateError: the state (or it with the updates not yet sent) is non-finite;
                this policy keeps its own statistics.
        """
        other = type(self).from_dict(state)
        if other.algorithm != self.algorithm or other.n_arms != self.n_arms:
            raise ValueError(
                f"state is {other.algorithm} with {other.n_arms} arms; this policy is "
                f"{self.algorithm} with {self.n_arms}"
            )
        pending = BanditDelta(self.algorithm, self.discount, self._pending_steps, self._pending)
        self.stats = self._folded(other.stats, pending)
        self.steps = other.steps + self._pending_steps
        self._changed()

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
        """Rebuild a policy (of the class ``data["algorithm"]`` names) from :meth:`to_dict`.

        Raises:
            ValueError: an unknown version or algorithm, or statistics of the wrong shapes.
            NonFiniteStateError: the statistics are non-finite (or unusable by the policy).
        """
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
        with np.errstate(over="ignore", invalid="ignore"):
            policy._check_stats(stats)  # a snapshot poisoned before rewards were bounded
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
