"""Statistics that compare an arm's rewards with the control's, and confidence intervals.

- :func:`two_proportion_z_test` for 0/1 rewards and :func:`welch_t_test` otherwise, both giving a
  :class:`SignificanceTest` (difference, its 95 % confidence interval, statistic, p-value).
- :func:`wilson_ci95` (a proportion) and :func:`mean_ci95` (a mean).
- Student's t distribution (:func:`t_sf`, :func:`t_ppf_975`): ``scipy.stats`` when it is
  installed, a pure implementation otherwise.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

__all__ = [
    "Z_95",
    "SignificanceTest",
    "mean_ci95",
    "t_ppf_975",
    "t_sf",
    "two_proportion_z_test",
    "welch_t_test",
    "wilson_ci95",
]

#: Two-sided 95 % quantile of the standard normal distribution.
Z_95 = 1.959963984540054


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
