"""Experiment report: accumulators, quantiles, confidence intervals and significance tests."""

from __future__ import annotations

import json
import math
import random
import statistics

import numpy as np
import pytest
import scipy.stats

from routing.arm_stats import ArmStats, LatencyHistogram, RewardStats
from routing.report import ExperimentStats
from routing.significance import (
    mean_ci95,
    t_sf,
    two_proportion_z_test,
    welch_t_test,
    wilson_ci95,
)
from routing.significance import t_ppf_975 as t_ppf


def test_latency_quantiles_within_one_percent() -> None:
    rng = random.Random(0)
    values = [20 * rng.lognormvariate(0, 0.8) for _ in range(20_000)]
    hist = LatencyHistogram()
    for v in values:
        hist.add(v)
    for q in (0.5, 0.95, 0.99):
        exact = float(np.quantile(values, q, method="lower"))
        assert hist.quantile(q) == pytest.approx(exact, rel=0.011)
    # Bounded memory: 20,000 values over ~4 decades fit in a few hundred buckets.
    assert len(hist.buckets) < 600


def test_histogram_merge_round_trip_and_edges() -> None:
    a, b, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for i in range(1000):
        (a if i % 3 else b).add(i * 0.37)
        both.add(i * 0.37)
    a.merge(LatencyHistogram.from_dict(json.loads(json.dumps(b.to_dict()))))
    assert a.to_dict() == both.to_dict() and a.count == 1000
    assert LatencyHistogram().quantile(0.5) is None
    zeros = LatencyHistogram()
    zeros.add(0.0, count=3)
    assert zeros.quantile(0.95) == 0.0
    with pytest.raises(ValueError):
        zeros.add(-1.0)
    with pytest.raises(ValueError):
        zeros.add(math.nan)
    with pytest.raises(ValueError, match="relative accuracy"):
        a.merge(LatencyHistogram(0.05))


def test_reward_stats_mean_variance_and_merge() -> None:
    rng = random.Random(1)
    rewards = [rng.gauss(3.0, 2.0) for _ in range(1001)]
    one, left, right = RewardStats(), RewardStats(), RewardStats()
    for i, r in enumerate(rewards):
        one.add(r)
        (left if i < 400 else right).add(r)
    left.merge(right)
    for stats in (one, left):
        assert stats.count == 1001
        assert stats.mean == pytest.approx(statistics.fmean(rewards), rel=1e-12)
        assert stats.variance == pytest.approx(statistics.variance(rewards), rel=1e-10)
        assert not stats.binary
    binary = RewardStats()
    for r in (0, 1, 1.0, 0.0):
        binary.add(r)
    assert binary.binary and binary.sum == 2
    assert RewardStats().variance is None


def test_two_proportion_z_test_matches_chi_square() -> None:
    # The pooled z-test is the 2x2 chi-square test without continuity correction: z^2 = chi2.
    test = two_proportion_z_test(60, 100, 45, 100)
    chi2, p, _, _ = scipy.stats.chi2_contingency([[60, 40], [45, 55]], correction=False)
    assert test.statistic is not None and test.p_value is not None
    assert test.statistic**2 == pytest.approx(chi2)
    assert test.p_value == pytest.approx(p)
    assert test.difference == pytest.approx(0.15)
    se = math.sqrt(0.6 * 0.4 / 100 + 0.45 * 0.55 / 100)
    assert test.ci95 == pytest.approx((0.15 - 1.959964 * se, 0.15 + 1.959964 * se))
    same = two_proportion_z_test(0, 10, 0, 20)
    assert (same.statistic, same.p_value, same.ci95) == (None, None, (0.0, 0.0))


def test_welch_t_test_matches_scipy() -> None:
    rng = random.Random(2)
    a = [rng.gauss(1.0, 1.0) for _ in range(40)]
    b = [rng.gauss(0.5, 2.0) for _ in range(70)]
    test = welch_t_test(
        statistics.fmean(a),
        statistics.variance(a),
        40,
        statistics.fmean(b),
        statistics.variance(b),
        70,
    )
    ref = scipy.stats.ttest_ind(a, b, equal_var=False)
    assert test.statistic == pytest.approx(ref.statistic)
    assert test.p_value == pytest.approx(ref.pvalue)
    assert test.df == pytest.approx(ref.df)
    low, high = ref.confidence_interval(0.95)
    assert test.ci95 == pytest.approx((low, high))
    assert welch_t_test(1.0, None, 1, 0.0, 1.0, 10).p_value is None


def test_pure_student_t_matches_scipy() -> None:
    for t, df in [(0.0, 3), (0.7, 1), (2.1, 4.5), (-1.3, 9), (4.0, 30), (2.0, 5000)]:
        assert t_sf(t, df, pure=True) == pytest.approx(scipy.stats.t.sf(t, df), rel=1e-9)
    for df in (1, 2.5, 10, 120):
        assert t_ppf(df, pure=True) == pytest.approx(scipy.stats.t.ppf(0.975, df), rel=1e-9)


def test_confidence_intervals() -> None:
    low, high = wilson_ci95(30, 100)
    assert (low, high) == pytest.approx((0.2189, 0.3958), abs=1e-4)  # textbook values
    assert wilson_ci95(0, 10)[0] == 0.0 and wilson_ci95(10, 10)[1] == pytest.approx(1.0)
    ci = mean_ci95(5.0, 4.0, 16)
    assert ci == pytest.approx(scipy.stats.t.interval(0.95, 15, loc=5.0, scale=0.5))
    assert mean_ci95(5.0, None, 1) is None


def test_report_per_arm_and_against_control() -> None:
    rng = random.Random(3)
    stats = ExperimentStats(["control", "treatment"])
    for arm, p_ok, reward_p, latency in [
        ("control", 0.99, 0.10, 20.0),
        ("treatment", 0.98, 0.14, 30.0),
    ]:
        for _ in range(5000):
            stats.record(arm, rng.random() < p_ok, latency * rng.lognormvariate(0, 0.2))
            stats.record_reward(arm, 1.0 if rng.random() < reward_p else 0.0)
    report = json.loads(json.dumps(stats.report()))
    assert report["control"] == "control"
    control, treatment = report["arms"]["control"], report["arms"]["treatment"]
    assert control["requests"] == 5000 and "vs_control" not in control
    assert control["p50_ms"] == pytest.approx(20.0, rel=0.03)
    assert treatment["p95_ms"] == pytest.approx(30.0 * math.exp(1.645 * 0.2), rel=0.05)
    assert 0.005 <= control["error_rate"] <= 0.015
    reward = treatment["reward"]
    assert reward["binary"] and reward["ci95"][0] < reward["mean"] < reward["ci95"][1]
    vs = treatment["vs_control"]
    # 10 % vs 14 % over 5,000 each: z ~ 6, far past any reasonable threshold.
    assert vs["test"] == "two_proportion_z"
    assert vs["significant"] and vs["p_value"] < 1e-6
    assert vs["ci95"][0] < vs["difference"] < vs["ci95"][1]


def test_real_valued_rewards_use_welch_and_missing_rewards_give_none() -> None:
    stats = ExperimentStats(["a", "b", "c"])
    for i in range(20):
        stats.record_reward("a", float(i % 4))
        stats.record_reward("b", float(i % 4) + 0.25)
    report = stats.report(control="a")
    assert report["arms"]["b"]["vs_control"]["test"] == "welch_t"
    assert not report["arms"]["b"]["vs_control"]["significant"]
    assert report["arms"]["c"]["vs_control"] is None
    assert report["arms"]["c"]["p50_ms"] is None and report["arms"]["c"]["error_rate"] is None
    with pytest.raises(ValueError, match="unknown arm 'd'"):
        stats.record("d", True, 1.0)
    with pytest.raises(ValueError, match="unknown arm"):
        stats.report(control="d")


def test_replica_stats_merge_into_one() -> None:
    whole, replicas = ExperimentStats(["a", "b"]), [ExperimentStats(["a", "b"]) for _ in range(3)]
    rng = random.Random(4)
    for i in range(300):
        arm, ok, latency, reward = rng.choice("ab"), rng.random() < 0.9, rng.uniform(1, 50), i % 2
        for target in (whole, replicas[i % 3]):
            target.record(arm, ok, latency)
            target.record_reward(arm, reward)
    merged = ExperimentStats(["a", "b"])
    for replica in replicas:
        merged.merge(ExperimentStats.from_dict(json.loads(json.dumps(replica.to_dict()))))
    for name in ("a", "b"):
        m, w = merged.arms[name], whole.arms[name]
        assert (m.requests, m.errors, m.latency.to_dict()) == (
            w.requests,
            w.errors,
            w.latency.to_dict(),
        )
        assert m.reward.mean == pytest.approx(w.reward.mean)
        assert m.reward.m2 == pytest.approx(w.reward.m2)
    assert repr(merged).startswith("ExperimentStats(a=")
    assert ArmStats.from_dict(merged.arms["a"].to_dict()).summary() == merged.arms["a"].summary()
