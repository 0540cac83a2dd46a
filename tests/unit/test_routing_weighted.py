"""WeightedRandom: the router's weighted split, with a seeded random source."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from routing.weighted import WeightedRandom


class FixedRandom(random.Random):
    """A random source that returns the given values in turn."""

    def __init__(self, values: list[float]):
        super().__init__(0)
        self._values = iter(values)

    def random(self) -> float:
        return next(self._values)


def draws(policy: WeightedRandom, n: int) -> list[int]:
    return [policy.choose() for _ in range(n)]


def test_seventy_thirty_split() -> None:
    counts = Counter(draws(WeightedRandom([0.7, 0.3], random.Random(1234)), 5000))
    assert set(counts) == {0, 1}
    assert abs(counts[0] / 5000 - 0.7) <= 0.03
    assert abs(counts[1] / 5000 - 0.3) <= 0.03


def test_unnormalised_weights_split_the_same_way() -> None:
    policy = WeightedRandom([7, 3], random.Random(99))
    assert policy.weights == [0.7, 0.3]
    counts = Counter(draws(policy, 5000))
    assert abs(counts[0] / 5000 - 0.7) <= 0.03


@pytest.mark.parametrize(
    ("weights", "never"),
    [([0.5, 0.0, 0.5], 1), ([0.0, 1.0], 0), ([1.0, 0.0], 1), ([0.0, 0.0, 0.2, 0.8], 0)],
)
def test_zero_weight_arm_is_never_chosen(weights: list[float], never: int) -> None:
    counts = Counter(draws(WeightedRandom(weights, random.Random(7)), 5000))
    assert counts[never] == 0
    assert sum(counts.values()) == 5000
    assert set(counts) == {i for i, w in enumerate(weights) if w > 0}


def test_zero_weight_arms_at_the_boundaries_of_the_draw() -> None:
    # random() returns values in [0, 1): check both ends and the exact cut points.
    policy = WeightedRandom([0.0, 0.5, 0.0, 0.5], FixedRandom([0.0, 0.4999, 0.5, 0.9999999]))
    assert draws(policy, 4) == [1, 1, 3, 3]


def test_choose_maps_the_draw_onto_cumulative_weights() -> None:
    policy = WeightedRandom([0.25, 0.5, 0.25], FixedRandom([0.0, 0.2499, 0.25, 0.7499, 0.75, 0.99]))
    assert draws(policy, 6) == [0, 0, 1, 1, 2, 2]


def test_single_arm() -> None:
    assert set(draws(WeightedRandom([2.0], random.Random(0)), 100)) == {0}


@pytest.mark.parametrize("weights", [[], [0.0], [0.0, 0.0], [-0.1, 1.1], [1.0, -1.0]])
def test_invalid_weights(weights: list[float]) -> None:
    with pytest.raises(ValueError, match="weights must be >= 0 with a positive sum") as info:
        WeightedRandom(weights)
    assert str(list(weights)) in str(info.value)


@pytest.mark.parametrize("weights", [[float("nan"), 1.0], [float("inf"), 1.0]], ids=["nan", "inf"])
def test_non_finite_weights_are_invalid(weights: list[float]) -> None:
    with pytest.raises(ValueError):
        WeightedRandom(weights)


def test_same_seed_same_sequence() -> None:
    a = draws(WeightedRandom([0.2, 0.3, 0.5], random.Random(42)), 500)
    b = draws(WeightedRandom([0.2, 0.3, 0.5], random.Random(42)), 500)
    c = draws(WeightedRandom([0.2, 0.3, 0.5], random.Random(43)), 500)
    assert a == b
    assert a != c
    assert set(a) == {0, 1, 2}


def test_repr_and_normalised_weights() -> None:
    policy = WeightedRandom([3, 1])
    assert policy.weights == [0.75, 0.25]
    assert repr(policy) == "WeightedRandom(weights=[0.75, 0.25])"
