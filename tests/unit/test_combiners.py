"""Ensemble combiners: exact numpy results."""

from __future__ import annotations

import numpy as np
import pytest

from nodes.combiners import BUILTIN, mean, vote, weighted_mean


def test_builtin_table() -> None:
    assert BUILTIN == {"mean": mean, "weighted_mean": weighted_mean, "vote": vote}


def test_mean_exact_and_keeps_float_dtype() -> None:
    outputs = [
        {"p": np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32)},
        {"p": np.array([[0.5, 0.5], [0.0, 1.0]], dtype=np.float32)},
    ]
    result = mean(outputs, [1.0, 1.0])
    assert list(result) == ["p"]
    assert result["p"].dtype == np.float32
    np.testing.assert_array_equal(
        result["p"], np.array([[0.375, 0.625], [0.5, 0.5]], dtype=np.float32)
    )


def test_mean_ignores_weights() -> None:
    outputs = [{"p": np.array([1.0, 2.0])}, {"p": np.array([3.0, 6.0])}]
    np.testing.assert_array_equal(mean(outputs, [100.0, 0.0])["p"], np.array([2.0, 4.0]))


def test_mean_of_integers_is_float64() -> None:
    outputs = [{"n": np.array([1, 2], dtype=np.int64)}, {"n": np.array([2, 2], dtype=np.int64)}]
    result = mean(outputs, [1.0, 1.0])["n"]
    assert result.dtype == np.float64
    np.testing.assert_array_equal(result, np.array([1.5, 2.0]))


def test_mean_accepts_lists() -> None:
    result = mean([{"p": [1.0, 3.0]}, {"p": [3.0, 5.0]}, {"p": [2.0, 4.0]}], [1, 1, 1])
    np.testing.assert_array_equal(result["p"], np.array([2.0, 4.0]))


def test_weighted_mean_exact() -> None:
    outputs = [{"p": np.array([1.0, 2.0])}, {"p": np.array([3.0, 6.0])}]
    np.testing.assert_array_equal(weighted_mean(outputs, [3.0, 1.0])["p"], np.array([1.5, 3.0]))
    # weights are normalised: [0.75, 0.25] is the same split
    np.testing.assert_array_equal(weighted_mean(outputs, [0.75, 0.25])["p"], np.array([1.5, 3.0]))
    # a zero weight leaves that member out
    np.testing.assert_array_equal(weighted_mean(outputs, [0.0, 2.0])["p"], np.array([3.0, 6.0]))


def test_weighted_mean_keeps_shape() -> None:
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    b = np.full((2, 3), 10.0)
    result = weighted_mean([{"p": a}, {"p": b}], [1.0, 4.0])["p"]
    assert result.shape == (2, 3)
    np.testing.assert_allclose(result, (a + 4 * b) / 5, rtol=0, atol=1e-12)


def test_vote_majority() -> None:
    outputs = [
        {"label": np.array([1, 2, 3])},
        {"label": np.array([1, 5, 4])},
        {"label": np.array([0, 5, 3])},
    ]
    result = vote(outputs, [1.0, 1.0, 1.0])["label"]
    assert result.dtype == np.int64
    np.testing.assert_array_equal(result, np.array([1, 5, 3]))


def test_vote_ties_go_to_the_earliest_member() -> None:
    outputs = [{"label": np.array([7, 1])}, {"label": np.array([3, 2])}]
    np.testing.assert_array_equal(vote(outputs, [1.0, 1.0])["label"], np.array([7, 1]))
    reordered = [outputs[1], outputs[0]]
    np.testing.assert_array_equal(vote(reordered, [1.0, 1.0])["label"], np.array([3, 2]))
    # a three-way tie, the earliest member's value wins
    three = [{"y": np.array([9])}, {"y": np.array([4])}, {"y": np.array([6])}]
    np.testing.assert_array_equal(vote(three, [1.0, 1.0, 1.0])["y"], np.array([9]))


def test_vote_is_weighted() -> None:
    outputs = [{"y": np.array([1])}, {"y": np.array([2])}, {"y": np.array([2])}]
    np.testing.assert_array_equal(vote(outputs, [3.0, 1.0, 1.0])["y"], np.array([1]))
    np.testing.assert_array_equal(vote(outputs, [1.0, 1.0, 1.0])["y"], np.array([2]))
    # tie by weight (2 vs 1 + 1): earliest member wins
    np.testing.assert_array_equal(vote(outputs, [2.0, 1.0, 1.0])["y"], np.array([1]))


def test_vote_keeps_shape_and_strings() -> None:
    outputs = [
        {"y": np.array([["a", "b"], ["c", "d"]])},
        {"y": np.array([["a", "x"], ["y", "d"]])},
        {"y": np.array([["z", "x"], ["c", "w"]])},
    ]
    result = vote(outputs, [1.0, 1.0, 1.0])["y"]
    assert result.shape == (2, 2)
    np.testing.assert_array_equal(result, np.array([["a", "x"], ["c", "d"]]))


def test_shared_keys_only_in_first_member_order() -> None:
    outputs = [
        {"a": np.array([1.0]), "b": np.array([2.0]), "c": np.array([3.0])},
        {"c": np.array([5.0]), "b": np.array([4.0]), "d": np.array([0.0])},
    ]
    result = mean(outputs, [1.0, 1.0])
    assert list(result) == ["b", "c"]
    np.testing.assert_array_equal(result["b"], np.array([3.0]))
    np.testing.assert_array_equal(result["c"], np.array([4.0]))
    assert list(vote(outputs, [1.0, 1.0])) == ["b", "c"]


@pytest.mark.parametrize("combiner", [mean, weighted_mean, vote])
def test_no_shared_key_is_an_error(combiner: object) -> None:
    outputs = [{"a": np.array([1.0])}, {"b": np.array([1.0])}]
    with pytest.raises(ValueError, match=r"^the members' outputs share no key to combine$"):
        combiner(outputs, [1.0, 1.0])  # type: ignore[operator]


def test_single_member_is_returned_as_is() -> None:
    out = {"p": np.array([0.25, 0.75])}
    np.testing.assert_array_equal(mean([out], [1.0])["p"], out["p"])
    np.testing.assert_array_equal(vote([out], [1.0])["p"], out["p"])


def test_vote_tie_with_fractional_weights_goes_to_earliest_member() -> None:
    outputs = [{"y": np.array([7])}, {"y": np.array([3])}, {"y": np.array([3])}]
    # 7 has 0.3, 3 has 0.1 + 0.2: a tie, so the earliest member's 7 should win.
    np.testing.assert_array_equal(vote(outputs, [0.3, 0.1, 0.2])["y"], np.array([7]))
