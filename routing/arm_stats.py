"""Per-arm accumulators of an experiment: mergeable and JSON-serialisable.

Each router replica accumulates locally and the router's shared state folds the replicas'
batches together:

- :class:`LatencyHistogram`: a log-bucketed latency sketch (the DDSketch idea) whose quantiles are
  within ``relative_accuracy`` (1 % by default) of the exact ones, in bounded memory.
- :class:`RewardStats`: count, mean and sum of squared deviations of the rewards (Welford's update,
  Chan's merge), and whether every reward so far was 0 or 1.
- :class:`ArmStats`: requests, errors, latency and rewards of one arm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from routing.significance import mean_ci95, wilson_ci95

__all__ = ["ArmStats", "LatencyHistogram", "RewardStats"]

# Latencies are clamped into this range (ms) so the sketch keeps a bounded number of buckets.
_MIN_MS = 1e-3
_MAX_MS = 1e7


class LatencyHistogram:
    """Mergeable latency sketch: log-spaced buckets, quantiles within a relative accuracy.

    A value ``x`` falls in bucket ``ceil(log(x) / log(gamma))`` with
    ``gamma = (1 + a) / (1 - a)``; every value of a bucket is within ``a`` (relative) of the
    bucket's representative value, so quantiles are too. Values under 1 µs count as 0; values
    over 10^7 ms are clamped, which bounds the number of buckets (about 1,100 at ``a = 0.01``).

    Args:
        relative_accuracy: ``a`` above, in (0, 0.5).
    """

    def __init__(self, relative_accuracy: float = 0.01):
        if not 0 < relative_accuracy < 0.5:
            raise ValueError(f"relative_accuracy must be in (0, 0.5), got {relative_accuracy}")
        self.relative_accuracy = relative_accuracy
        self._gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._log_gamma = math.log(self._gamma)
        self.buckets: dict[int, int] = {}
        self.zero = 0
        self.count = 0

    def add(self, value_ms: float, count: int = 1) -> None:
        """Count ``value_ms`` (>= 0) ``count`` times."""
        if not value_ms >= 0 or math.isnan(value_ms):
            raise ValueError(f"latency must be a number >= 0, got {value_ms}")
        if value_ms < _MIN_MS:
            self.zero += count
        else:
            index = math.ceil(math.log(min(value_ms, _MAX_MS)) / self._log_gamma)
            self.buckets[index] = self.buckets.get(index, 0) + count
        self.count += count

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile (0 <= q <= 1) in ms, or None when nothing was added."""
        if not 0 <= q <= 1:
            raise ValueError(f"q must be in [0, 1], got {q}")
        if self.count == 0:
            return None
        rank = q * (self.count - 1)
        seen = self.zero
        if seen > rank:
            return 0.0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen > rank:
                return 2 * self._gamma**index / (self._gamma + 1)
        return 2 * self._gamma ** max(self.buckets) / (self._gamma + 1)  # rounding guard

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s counts to this histogram (same relative accuracy)."""
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError(
                f"cannot merge histograms of relative accuracy {other.relative_accuracy} "
                f"into {self.relative_accuracy}"
            )
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.zero += other.zero
        self.count += other.count

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (bucket indices as string keys)."""
        return {
            "relative_accuracy": self.relative_accuracy,
            "zero": self.zero,
            "buckets": {str(k): v for k, v in sorted(self.buckets.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyHistogram:
        """Rebuild a histogram from :meth:`to_dict`'s output."""
        hist = cls(float(data.get("relative_accuracy", 0.01)))
        hist.zero = int(data.get("zero", 0))
        hist.buckets = {int(k): int(v) for k, v in data.get("buckets", {}).items()}
        hist.count = hist.zero + sum(hist.buckets.values())
        return hist

    def __repr__(self) -> str:
        return f"LatencyHistogram(count={self.count}, p50={self.quantile(0.5)})"


@dataclass
class RewardStats:
    """Streaming mean and variance of an arm's rewards.

    Attributes:
        count: rewards seen.
        mean: their mean (0 when none).
        m2: sum of squared deviations from the mean (Welford).
        binary: True while every reward was exactly 0 or 1.
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    binary: bool = True

    def add(self, reward: float) -> None:
        """Record one finite reward."""
        if not math.isfinite(reward):
            raise ValueError(f"reward must be a finite number, got {reward}")
        self.count += 1
        delta = reward - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (reward - self.mean)
        self.binary = self.binary and reward in (0, 1)

    def merge(self, other: RewardStats) -> None:
        """Fold ``other`` into this one (Chan et al.'s parallel update)."""
        if other.count == 0:
            return
        n = self.count + other.count
        delta = other.mean - self.mean
        self.m2 += other.m2 + delta * delta * self.count * other.count / n
        self.mean += delta * other.count / n
        self.count = n
        self.binary = self.binary and other.binary

    @property
    def variance(self) -> float | None:
        """Sample variance (n - 1 in the denominator); None under two rewards."""
        return max(self.m2, 0.0) / (self.count - 1) if self.count >= 2 else None

    @property
    def sum(self) -> float:
        """Sum of the rewards (the number of successes when they are 0/1)."""
        return self.mean * self.count

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {"count": self.count, "mean": self.mean, "m2": self.m2, "binary": self.binary}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RewardStats:
        """Rebuild from :meth:`to_dict`'s output."""
        return cls(int(data["count"]), float(data["mean"]), float(data["m2"]), bool(data["binary"]))


@dataclass
class ArmStats:
    """Requests, errors, latency and rewards of one arm; mergeable and JSON-serialisable."""

    requests: int = 0
    errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    reward: RewardStats = field(default_factory=RewardStats)

    def record(self, ok: bool, latency_ms: float) -> None:
        """Record one request: whether it succeeded and how long it took."""
        self.latency.add(latency_ms)
        self.requests += 1
        if not ok:
            self.errors += 1

    def record_reward(self, reward: float) -> None:
        """Record one reward (feedback) for this arm."""
        self.reward.add(reward)

    def merge(self, other: ArmStats) -> None:
        """Fold ``other`` into this one."""
        self.requests += other.requests
        self.errors += other.errors
        self.latency.merge(other.latency)
        self.reward.merge(other.reward)

    @property
    def error_rate(self) -> float | None:
        """Share of failed requests; None before the first request."""
        return self.errors / self.requests if self.requests else None

    def summary(self) -> dict[str, Any]:
        """Requests, errors, error rate, p50/p95 (ms) and the reward mean with its 95 % CI."""
        rewards = self.reward
        if rewards.count == 0:
            ci: tuple[float, float] | None = None
        elif rewards.binary:
            ci = wilson_ci95(rewards.sum, rewards.count)
        else:
            ci = mean_ci95(rewards.mean, rewards.variance, rewards.count)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p50_ms": self.latency.quantile(0.5),
            "p95_ms": self.latency.quantile(0.95),
            "reward": {
                "count": rewards.count,
                "mean": rewards.mean if rewards.count else None,
                "ci95": list(ci) if ci is not None else None,
                "binary": rewards.binary,
            },
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "latency": self.latency.to_dict(),
            "reward": self.reward.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArmStats:
        """Rebuild from :meth:`to_dict`'s output."""
        return cls(
            int(data["requests"]),
            int(data["errors"]),
            LatencyHistogram.from_dict(data["latency"]),
            RewardStats.from_dict(data["reward"]),
        )
