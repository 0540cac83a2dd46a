"""Experiment report: per-arm accumulators and the statistics that compare arms with a control.

Everything here is mergeable, so each router replica can accumulate locally and the router's
shared state can fold the replicas' batches together (:meth:`ExperimentStats.merge`):

- :class:`LatencyHistogram`: a log-bucketed latency sketch (the DDSketch idea) whose quantiles are
  within ``relative_accuracy`` (1 % by default) of the exact ones, in bounded memory.
- :class:`RewardStats`: count, mean and sum of squared deviations of the rewards (Welford's update,
  Chan's merge), and whether every reward so far was 0 or 1.
- :class:`ArmStats`: requests, errors, latency and rewards of one arm.
- :class:`ExperimentStats`: one :class:`ArmStats` per arm and :meth:`~ExperimentStats.report`,
  the JSON report: per arm requests, errors, p50/p95 latency, the reward mean with a 95 %
  confidence interval, and the difference against the control arm with a significance test
  (two-proportion z-test when both arms' rewards are 0/1, Welch's t-test otherwise).

The tests use ``scipy.stats`` when it is installed and a pure implementation otherwise.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

__all__ = [
    "ArmStats",
    "ExperimentStats",
    "LatencyHistogram",
    "RewardStats",
    "SignificanceTest",
    "mean_ci95",
    "t_sf",
    "two_proportion_z_test",
    "welch_t_test",
    "wilson_ci95",
]

#: Two-sided 95 % quantile of the standard normal distribution.
Z_95 = 1.959963984540054
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


@dataclass(frozen=True)
class SignificanceTest:
    """Outcome of comparing an arm's rewards with the control arm's.

    Attributes:
        test: ``"two_proportion_z"`` or ``"welch_t"``.
        difference: arm mean minus control mean.
        ci95: 95 % confidence interval of the difference (None when it cannot be computed).
        statistic: z or t (None when the standard error is 0 or there are too few rewards).
        p_value: two-sided p-value (None as for ``statistic``).
        df: Welch's degrees of freedom (None for the z-test).
    """

    test: str
    difference: float
    ci95: tuple[float, float] | None
    statistic: float | None
    p_value: float | None
    df: float | None = None

    def to_dict(self, alpha: float = 0.05) -> dict[str, Any]:
        """JSON form, with ``significant`` (p-value < ``alpha``)."""
        significant = self.p_value is not None and self.p_value < alpha
        ci95 = list(self.ci95) if self.ci95 is not None else None
        return {**asdict(self), "ci95": ci95, "significant": significant}


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


def two_proportion_z_test(
    successes: int, n: int, control_successes: int, control_n: int
) -> SignificanceTest:
    """Pooled two-proportion z-test of ``successes / n`` against the control's proportion.

    The confidence interval of the difference uses the unpooled (Wald) standard error.
    """
    if n <= 0 or control_n <= 0:
        raise ValueError(f"both sample sizes must be > 0, got {n} and {control_n}")
    p1, p0 = successes / n, control_successes / control_n
    diff = p1 - p0
    pooled = (successes + control_successes) / (n + control_n)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / control_n))
    se = math.sqrt(p1 * (1 - p1) / n + p0 * (1 - p0) / control_n)
    if se_pooled == 0:
        return SignificanceTest("two_proportion_z", diff, (diff, diff), None, None)
    z = diff / se_pooled
    p_value = math.erfc(abs(z) / math.sqrt(2))
    return SignificanceTest(
        "two_proportion_z", diff, (diff - Z_95 * se, diff + Z_95 * se), z, p_value
    )


def welch_t_test(
    mean: float,
    variance: float | None,
    n: int,
    control_mean: float,
    control_variance: float | None,
    control_n: int,
) -> SignificanceTest:
    """Welch's unequal-variances t-test of ``mean`` against the control's mean.

    Variances are sample variances; with fewer than two rewards in either arm (variance None)
    or a zero standard error, only the difference is reported.
    """
    diff = mean - control_mean
    if variance is None or control_variance is None:
        return SignificanceTest("welch_t", diff, None, None, None)
    a, b = variance / n, control_variance / control_n
    se = math.sqrt(a + b)
    if se == 0:
        return SignificanceTest("welch_t", diff, None, None, None)
    df = (a + b) ** 2 / (a * a / (n - 1) + b * b / (control_n - 1))
    t = diff / se
    half = t_ppf_975(df) * se
    return SignificanceTest(
        "welch_t", diff, (diff - half, diff + half), t, 2 * t_sf(abs(t), df), df
    )


def wilson_ci95(successes: float, n: int) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion."""
    if n <= 0:
        raise ValueError(f"n must be > 0, got {n}")
    p = successes / n
    z2 = Z_95 * Z_95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_ci95(mean: float, variance: float | None, n: int) -> tuple[float, float] | None:
    """Student-t 95 % interval of a mean; None under two observations."""
    if variance is None or n < 2:
        return None
    half = t_ppf_975(n - 1) * math.sqrt(variance / n)
    return (mean - half, mean + half)


# --- Student's t distribution: scipy when installed, else a pure implementation. ---


@functools.lru_cache(maxsize=1)
def _scipy_stats() -> ModuleType | None:
    try:
        import scipy.stats
    except ImportError:  # pragma: no cover - scipy ships with the dev extras
        return None
    return scipy.stats


def t_sf(t: float, df: float, *, pure: bool = False) -> float:
    """Survival function ``P(T > t)`` of Student's t with ``df`` degrees of freedom.

    Args:
        t: the statistic.
        df: degrees of freedom (> 0, need not be whole).
        pure: skip scipy (tests compare both).
    """
    stats = None if pure else _scipy_stats()
    if stats is not None:
        return float(stats.t.sf(t, df))
    if df <= 0:
        raise ValueError(f"df must be > 0, got {df}")
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1 - tail


def t_ppf_975(df: float, *, pure: bool = False) -> float:
    """The 97.5 % quantile of Student's t (the half-width factor of a 95 % interval)."""
    stats = None if pure else _scipy_stats()
    if stats is not None:
        return float(stats.t.ppf(0.975, df))
    lo, hi = 0.0, 1.0
    while t_sf(hi, df, pure=True) > 0.025:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if t_sf(mid, df, pure=True) > 0.025:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) (continued fraction, Lentz's method)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    log_front += a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1) / (a + b + 2):
        # The continued fraction converges fast on this side only; use the symmetry.
        return 1.0 - _betainc(b, a, 1 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return math.exp(log_front) * h / a
