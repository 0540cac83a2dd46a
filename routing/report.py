"""Experiment report: one :class:`~routing.arm_stats.ArmStats` per arm, compared with a control.

:class:`ExperimentStats` is mergeable, so each router replica can accumulate locally and the
router's shared state can fold the replicas' batches together (:meth:`ExperimentStats.merge`).
:meth:`~ExperimentStats.report` is the JSON report: per arm requests, errors, p50/p95 latency,
the reward mean with a 95 % confidence interval, and the difference against the control arm
with a significance test (two-proportion z-test when both arms' rewards are 0/1, Welch's t-test
otherwise; see :mod:`routing.significance`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from routing.arm_stats import ArmStats, RewardStats
from routing.significance import SignificanceTest, two_proportion_z_test, welch_t_test

__all__ = ["ExperimentStats", "compare_rewards"]


class ExperimentStats:
    """One :class:`ArmStats` per named arm; the unit replicas send to the router's shared state.

    Args:
        arms: arm names, in the router's order.
    """

    def __init__(self, arms: Iterable[str]):
        self.arms: dict[str, ArmStats] = {name: ArmStats() for name in arms}
        if not self.arms:
            raise ValueError("an experiment needs at least one arm")

    def _arm(self, arm: str) -> ArmStats:
        try:
            return self.arms[arm]
        except KeyError:
            raise ValueError(f"unknown arm {arm!r}; arms are {list(self.arms)}") from None

    def record(self, arm: str, ok: bool, latency_ms: float) -> None:
        """Record one request served by ``arm``."""
        self._arm(arm).record(ok, latency_ms)

    def record_reward(self, arm: str, reward: float) -> None:
        """Record one reward for ``arm``."""
        self._arm(arm).record_reward(reward)

    def merge(self, other: ExperimentStats) -> None:
        """Fold another replica's (or batch's) stats into these; arms must be known here."""
        for name, stats in other.arms.items():
            self._arm(name).merge(stats)

    def report(self, control: str | None = None, alpha: float = 0.05) -> dict[str, Any]:
        """The experiment report (JSON-serialisable).

        Args:
            control: arm the others are compared with (default: the first arm).
            alpha: significance level of the tests' ``significant`` flag.

        Returns:
            ``{"control": name, "alpha": alpha, "arms": {name: summary}}``; each non-control
            arm's summary has ``vs_control`` (see :class:`SignificanceTest`), or None while
            either arm has no rewards.
        """
        control = next(iter(self.arms)) if control is None else control
        base = self._arm(control).reward
        arms: dict[str, Any] = {}
        for name, stats in self.arms.items():
            summary = stats.summary()
            if name != control:
                test = compare_rewards(stats.reward, base)
                summary["vs_control"] = test.to_dict(alpha) if test is not None else None
            arms[name] = summary
        return {"control": control, "alpha": alpha, "arms": arms}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: ``{arm: ArmStats.to_dict()}``."""
        return {name: stats.to_dict() for name, stats in self.arms.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentStats:
        """Rebuild from :meth:`to_dict`'s output."""
        stats = cls(data)
        stats.arms = {name: ArmStats.from_dict(arm) for name, arm in data.items()}
        return stats

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={s.requests}" for n, s in self.arms.items())
        return f"ExperimentStats({inner})"


def compare_rewards(arm: RewardStats, control: RewardStats) -> SignificanceTest | None:
    """z-test when both arms' rewards are 0/1, Welch's t-test otherwise; None if one has none."""
    if arm.count == 0 or control.count == 0:
        return None
    if arm.binary and control.binary:
        return two_proportion_z_test(round(arm.sum), arm.count, round(control.sum), control.count)
    return welch_t_test(
        arm.mean, arm.variance, arm.count, control.mean, control.variance, control.count
    )
