"""Drift statistics on known distributions: identical is ~0, shifted is over the threshold, and
PSI, Jensen-Shannon and Wasserstein match hand computations."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from nodes.drift import EPSILON, Binning, Window, compare, js_distance, load_reference, psi
from nodes.drift import wasserstein as w1

THRESHOLDS = {"psi": 0.2, "js": 0.2, "wasserstein": None}


def test_identical_distributions_score_zero() -> None:
    counts = np.array([5, 10, 20, 10, 5])
    assert psi(counts, counts * 3) == pytest.approx(0.0, abs=1e-12)
    assert js_distance(counts, counts * 3) == pytest.approx(0.0, abs=1e-7)
    assert w1(counts, counts * 3, np.arange(5.0)) == pytest.approx(0.0, abs=1e-12)


def test_psi_matches_a_hand_computation() -> None:
    expected, actual = np.array([50, 30, 20]), np.array([20, 30, 50])
    hand = (0.2 - 0.5) * math.log(0.2 / 0.5) + 0 + (0.5 - 0.2) * math.log(0.5 / 0.2)
    assert psi(expected, actual) == pytest.approx(hand, rel=1e-3)


def test_psi_stays_finite_with_empty_bins() -> None:
    value = float(psi(np.array([10, 0]), np.array([0, 10])))
    assert math.isfinite(value)
    # each empty bin counts as EPSILON: (1 - e) ln((1 - e) / e) twice, renormalised
    e = EPSILON / (1 + EPSILON)
    assert value == pytest.approx(2 * (1 - 2 * e) * math.log((1 - e) / e), rel=1e-3)


def test_js_distance_is_within_zero_and_one() -> None:
    assert js_distance(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    values = js_distance(rng.integers(0, 9, (200, 6)), rng.integers(0, 9, (200, 6)))
    assert values.shape == (200,)
    assert np.all((values >= 0) & (values <= 1))
    # half the mass moved to a bin of its own; the mixture m is (0.75, 0.25)
    p, q = np.array([1.0, 0.0]), np.array([0.5, 0.5])
    hand = 0.5 * (1 * math.log2(1 / 0.75)) + 0.5 * (
        0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    )
    assert js_distance(p, q) == pytest.approx(math.sqrt(hand))


def test_wasserstein_matches_hand_computations() -> None:
    # all the mass moved from 0 to 2
    assert w1(np.array([1, 0, 0]), np.array([0, 0, 1]), np.array([0.0, 1.0, 2.0])) == 2.0
    # CDF gaps 0.5 over [0, 1] and 0.5 over [1, 3]: 0.5 + 1.0
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.5, 0.5])
    assert w1(p, q, np.array([0.0, 1.0, 3.0])) == pytest.approx(1.5)
    # equals the sample definition (mean of sorted differences) for equal-size samples
    a, b = np.array([0, 0, 1, 3]), np.array([1, 1, 3, 3])
    values = np.array([0.0, 1.0, 3.0])
    pa, pb = [np.array([(s == v).sum() for v in values]) for s in (a, b)]
    assert w1(pa, pb, values) == pytest.approx(np.abs(np.sort(a) - np.sort(b)).mean())


def test_binning_puts_out_of_range_values_in_the_outer_bins() -> None:
    binning = Binning(np.array([[0.0, 5.0], [10.0, 5.0]]), bins=5)
    index = binning.index(np.array([[-1.0, 5.0], [0.0, 4.0], [10.0, 6.0], [11.0, 5.0]]))
    # feature 0: 0..10 in 5 bins; feature 1 is constant (range 4.5..5.5, one value per bin)
    assert index[:, 0].tolist() == [0, 1, 5, 6]
    assert index[:, 1].tolist() == [3, 0, 6, 3]
    assert binning.reference.sum(axis=1).tolist() == [2, 2]
    with pytest.raises(ValueError, match="expected 2 features per row, got 3"):
        binning.index(np.zeros((1, 3)))


def test_the_window_keeps_the_last_rows_only() -> None:
    binning = Binning(np.arange(10.0)[:, None], bins=10)
    window = Window(binning, size=4)
    window.add(np.zeros((3, 1)))
    window.add(np.full((3, 1), 9.0))
    counts = window.counts()
    assert window.filled == 4
    assert counts.sum() == 4 and counts[0, 1] == 1 and counts[0, 10] == 3


def test_a_shift_is_flagged_and_a_fresh_sample_is_not() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(0, 1, (2000, 8))
    binning = Binning(reference, bins=10)
    same = Window(binning, 1000)
    same.add(rng.normal(0, 1, (1000, 8)))
    calm = compare(binning, same.counts(), THRESHOLDS)
    assert calm["summary"]["drifted"] == 0 and calm["drifted_features"] == []
    assert calm["summary"]["psi_max"] < 0.05
    live = rng.normal(0, 1, (1000, 8))
    live[:, 3] += 1.0  # one feature moves by a standard deviation
    moved = Window(binning, 1000)
    moved.add(live)
    names = [f"x[{i}]" for i in range(8)]
    report = compare(binning, moved.counts(), THRESHOLDS, names, top=2)
    assert report["drifted_features"] == ["x[3]"]
    assert report["features"]["x[3]"]["psi"] > 0.2
    assert report["features"]["x[3]"]["wasserstein"] == pytest.approx(1.0, abs=0.15)
    assert next(iter(report["features"])) == "x[3]" and len(report["features"]) == 2


def test_references_load_from_npz_npy_and_jsonl(tmp_path: str) -> None:
    x = np.arange(12.0).reshape(4, 3)
    npz, npy, jsonl = (os.path.join(tmp_path, f"ref.{e}") for e in ("npz", "npy", "jsonl"))
    np.savez(npz, x=x, label=np.array([0, 1, 1, 2]))
    np.save(npy, x)
    with open(jsonl, "w") as f:
        for row, label in zip(x, [0, 1, 1, 2]):
            f.write(json.dumps({"input": row.tolist(), "label": label}) + "\n")
    for path in (npz, npy, jsonl):
        data = load_reference(path, ["input"])
        assert data["input"].tolist() == x.tolist()
    assert load_reference(jsonl, ["input"])["label"].tolist() == [[0], [1], [1], [2]]
    with pytest.raises(ValueError, match="lacks input 'pixels'"):
        load_reference(npz, ["pixels", "input"])
    with pytest.raises(ValueError, match=r"must be a \.npz, \.npy or \.jsonl file"):
        load_reference(os.path.join(tmp_path, "ref.csv"), ["input"])
    with pytest.raises(ValueError, match="cannot read reference"):
        load_reference(os.path.join(tmp_path, "missing.npz"), ["input"])
