"""StickyAB: weighted split, consistent-hash stickiness for keyed requests, runtime weights."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from pydantic import ValidationError

from routing.ab import StickyAB, extract_key
from routing.config import ABConfig, StickyKey

KEYS = [f"user-{i}" for i in range(10_000)]


def shares(arms: list[int], n_arms: int) -> list[float]:
    counts = Counter(arms)
    return [counts[i] / len(arms) for i in range(n_arms)]


def test_keyless_requests_split_seventy_thirty() -> None:
    # Binomial sd of the share over 5,000 draws is 0.0065, so +-3 points is ~4.6 sd.
    policy = StickyAB([0.7, 0.3], random.Random(1234))
    share = shares([policy.choose() for _ in range(5000)], 2)
    assert abs(share[0] - 0.7) <= 0.03
    assert abs(share[1] - 0.3) <= 0.03


def test_keyed_requests_split_seventy_thirty() -> None:
    # 5,000 distinct keys: each lands on arm 0 with probability 0.7 over the hash; same sd.
    policy = StickyAB([0.7, 0.3], random.Random(0))
    share = shares([policy.choose(k) for k in KEYS[:5000]], 2)
    assert abs(share[0] - 0.7) <= 0.03


def test_three_arms_keyed_split() -> None:
    policy = StickyAB([0.5, 0.3, 0.2])
    share = shares([policy.choose(k) for k in KEYS], 3)
    for got, want in zip(share, [0.5, 0.3, 0.2]):
        assert abs(got - want) <= 0.02  # sd <= 0.005 over 10,000 keys


def test_keyed_requests_are_fully_sticky() -> None:
    policy = StickyAB([0.7, 0.3], random.Random(5))
    first = {k: policy.choose(k) for k in KEYS[:2000]}
    # Interleave keyless draws (which consume the RNG) with repeats of every key, in a new order.
    order = KEYS[:2000] * 3
    random.Random(9).shuffle(order)
    for key in order:
        policy.choose()
        assert policy.choose(key) == first[key]
    # Another replica with the same weights agrees on every key (nothing is per-process).
    other = StickyAB([0.7, 0.3], random.Random(77))
    assert all(other.choose(k) == arm for k, arm in first.items())


def test_seventy_thirty_to_sixty_forty_moves_only_the_necessary_keys() -> None:
    # The necessary share is 10 %: exactly the keys arm 1 must gain. Allow 2 points (sd 0.003).
    policy = StickyAB([0.7, 0.3])
    before = [policy.choose(k) for k in KEYS]
    policy.set_weights([0.6, 0.4])
    after = [policy.choose(k) for k in KEYS]
    moved = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(moved) / len(KEYS) <= 0.10 + 0.02
    assert len(moved) / len(KEYS) >= 0.10 - 0.02
    # Raising arm 1's weight moves keys to arm 1 only.
    assert set(moved) == {(0, 1)}
    assert abs(shares(after, 2)[1] - 0.4) <= 0.02
    policy.set_weights([0.7, 0.3])
    assert [policy.choose(k) for k in KEYS] == before


def test_zeroing_an_arm_moves_only_its_keys() -> None:
    policy = StickyAB([0.5, 0.3, 0.2], arm_ids=["a", "b", "c"])
    before = {k: policy.choose(k) for k in KEYS}
    policy.set_weights([0.5, 0.3, 0.0])
    after = {k: policy.choose(k) for k in KEYS}
    assert all(after[k] == arm for k, arm in before.items() if arm != 2)
    assert 2 not in after.values()


def test_arm_ids_and_salt_decide_the_hash() -> None:
    named = StickyAB([0.5, 0.5], arm_ids=["stable", "candidate"])
    same = StickyAB([0.5, 0.5], arm_ids=["stable", "candidate"])
    salted = StickyAB([0.5, 0.5], arm_ids=["stable", "candidate"], salt="exp-2")
    a = [named.choose(k) for k in KEYS[:1000]]
    assert a == [same.choose(k) for k in KEYS[:1000]]
    differ = sum(x != salted.choose(k) for x, k in zip(a, KEYS[:1000]))
    assert 400 <= differ <= 600  # an independent split disagrees on about half the keys


def test_weights_are_normalised_and_validated() -> None:
    policy = StickyAB([7, 3])
    assert policy.weights == [0.7, 0.3]
    with pytest.raises(ValueError, match="expected 2 weights"):
        policy.set_weights([1.0])
    with pytest.raises(ValueError, match="weights must be >= 0"):
        policy.set_weights([0.0, 0.0])
    assert policy.weights == [0.7, 0.3]
    with pytest.raises(ValueError, match="arm_ids"):
        StickyAB([0.5, 0.5], arm_ids=["a", "a"])
    assert repr(policy) == "StickyAB(weights=[0.7, 0.3], arm_ids=['0', '1'], salt='')"


def test_same_seed_same_keyless_sequence() -> None:
    a = StickyAB([0.2, 0.8], random.Random(3))
    b = StickyAB([0.2, 0.8], random.Random(3))
    assert [a.choose() for _ in range(200)] == [b.choose() for _ in range(200)]


def test_extract_key_from_a_header() -> None:
    key = StickyKey(header="X-User-Id")
    assert extract_key(key, {"x-user-id": "alice"}) == "alice"
    assert extract_key(key, {"X-User-Id": "bob"}, {"user_id": "ignored"}) == "bob"
    assert extract_key(key, {"x-user-id": ""}) is None
    assert extract_key(key, {}) is None
    assert extract_key(key, None, {"X-User-Id": "x"}) is None


def test_extract_key_from_a_payload_field() -> None:
    key = StickyKey(field="user.id")
    assert extract_key(key, None, {"user": {"id": "u1"}}) == "u1"
    assert extract_key(key, None, {"user": {"id": 42}}) == "42"
    for payload in ({"user": {"id": True}}, {"user": {"id": 1.5}}, {"user": "x"}, {}, None):
        assert extract_key(key, {"user.id": "h"}, payload) is None
    assert extract_key(None, {"a": "b"}, {"c": 1}) is None


def test_key_config_needs_exactly_one_source() -> None:
    with pytest.raises(ValidationError, match="exactly one of header or field"):
        StickyKey()
    with pytest.raises(ValidationError, match="exactly one of header or field"):
        StickyKey(header="X-User-Id", field="user_id")
    with pytest.raises(ValidationError):
        ABConfig.model_validate({"key": {"header": "X-User-Id"}, "nope": 1})
    config = ABConfig.model_validate({"key": {"field": "user_id"}, "salt": "s"})
    assert config.key == StickyKey(field="user_id")
    assert extract_key(config.key, None, {"user_id": "u"}) == "u"
