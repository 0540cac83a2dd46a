"""Feedback tokens: signed, bound to their graph and routers' configurations, expiring,
single-use; a rejected token changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import random
import re
from typing import Any

import numpy as np
import pytest

from nodes.errors import GraphError
from routing.bandits import ThompsonBeta
from routing.replay import ReplayGuard
from routing.tokens import (
    Decision,
    ExpiredTokenError,
    FeedbackTokenError,
    FeedbackTokens,
    ForgedTokenError,
    MalformedTokenError,
    ReplayedTokenError,
    ReplayGuardFullError,
)

KEY = "k" * 32
OTHER_KEY = "o" * 32


def g_tokens(key: str = KEY, **kwargs: Any) -> FeedbackTokens:
    """The tokens of graph ``g`` (tests that are not about the binding)."""
    return FeedbackTokens(key, graph="g", **kwargs)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_token(claims: Any, key: str = KEY) -> str:
    """A token with a valid signature over arbitrary claims (what only the key holder can make)."""
    body = f"v2.{b64(json.dumps(claims).encode())}"
    return f"{body}.{b64(hmac.new(key.encode(), body.encode(), hashlib.sha256).digest())}"


def claims_of(**extra: Any) -> dict[str, Any]:
    """Well-formed claims of graph ``g`` for router ``r``, with ``extra`` on top."""
    base = {"jti": "t", "rid": "q", "iat": 0, "exp": 10, "g": "g", "h": {"r": ""}, "d": [["r", 0]]}
    return {**base, **extra}


def test_round_trip() -> None:
    tokens = g_tokens(ttl_s=60)
    token = tokens.issue(
        [("router-a", 1), Decision("bandit", 2, (1.0, 0.5))], "req-1", now=1000.0, token_id="t1"
    )
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    claims = tokens.verify(token, now=1059.9)
    assert claims.token_id == "t1"
    assert claims.request_id == "req-1"
    assert (claims.issued_at, claims.expires_at) == (1000.0, 1060.0)
    assert claims.decisions == (Decision("router-a", 1), Decision("bandit", 2, (1.0, 0.5)))
    # Triples carry a context; numpy integers and arrays are accepted.
    triple = tokens.issue([("lin", np.int64(1), np.array([1.0, 2.5]))], "q", now=0.0)
    assert tokens.verify(triple, 1.0).decisions == (Decision("lin", 1, (1.0, 2.5)),)
    for bad in ([], [("", 0)], [("r", -1)], [("r", 0, [math.inf])]):
        with pytest.raises(ValueError):
            tokens.issue(bad, "q", now=0.0)
    # Random token ids by default: two tokens for the same request differ.
    assert tokens.issue([("r", 0)], "q", 0.0) != tokens.issue([("r", 0)], "q", 0.0)


def test_expired() -> None:
    tokens = g_tokens()
    token = tokens.issue([("r", 0)], "q", now=0.0, ttl_s=10)
    with pytest.raises(ExpiredTokenError) as info:
        tokens.verify(token, now=10.0)
    assert info.value.status_code == 410


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"), id="signature"),
        pytest.param(
            lambda t: (
                "v2."
                + b64(base64.urlsafe_b64decode(t.split(".")[1] + "==").replace(b'"r",0', b'"r",1'))
                + "."
                + t.split(".")[2]
            ),
            id="claims",
        ),
        pytest.param(lambda t: signed_token({"x": 1}, OTHER_KEY), id="other-key"),
        pytest.param(lambda t: "v2." + t.split(".")[1] + ".", id="no-signature"),
    ],
)
def test_forged(tamper: Any) -> None:
    tokens = g_tokens()
    token = tokens.issue([("r", 0)], "q", now=0.0)
    with pytest.raises(ForgedTokenError) as info:
        tokens.verify(tamper(token), now=1.0)
    assert info.value.status_code == 401


@pytest.mark.parametrize(
    "token",
    [
        "",
        123,
        None,
        "abc",
        "v2.abc",
        "v1.e30.AAAA",
        "v2.e30.AAAA.more",
        "v2.@@@.AAAA",
        "v2.e30.A",
        "v2." + "A" * 9000 + ".AAAA",
    ],
)
def test_malformed(token: Any) -> None:
    with pytest.raises(MalformedTokenError) as info:
        g_tokens().verify(token, now=0.0)
    assert info.value.status_code == 400


@pytest.mark.parametrize(
    "claims",
    [
        [],
        {"jti": "t"},
        claims_of(d=[]),
        claims_of(jti=""),
        claims_of(exp="10"),
        claims_of(d=[["r", -1]]),
        claims_of(d=[["r", True]]),
        claims_of(d=[["", 0]], h={"": ""}),
        claims_of(d=[["r", 0, ["x"]]]),
        claims_of(extra=1),
        claims_of(g=None),
        claims_of(h={}),
        claims_of(h={"r": 1}),
        claims_of(h={"r": "", "other": ""}),
        {"jti": "t", "rid": "q", "iat": 0, "exp": 10, "d": [["r", 0]]},  # a v1 token's claims
    ],
)
def test_signed_but_malformed_claims(claims: Any) -> None:
    with pytest.raises(MalformedTokenError):
        g_tokens().verify(signed_token(claims), now=0.0)


def test_replayed() -> None:
    tokens, guard = g_tokens(), ReplayGuard(grace_s=5)
    token = tokens.issue([("r", 0)], "q", now=0.0, ttl_s=10, token_id="once")
    guard.check_and_mark(tokens.verify(token, 1.0), now=1.0)
    with pytest.raises(ReplayedTokenError) as info:
        guard.check_and_mark(tokens.verify(token, 2.0), now=2.0)
    assert info.value.status_code == 409
    assert "once" in guard and len(guard) == 1
    # Kept until expiry + grace; after that verify() rejects the token as expired anyway.
    guard.check_and_mark(tokens.verify(tokens.issue([("r", 0)], "q", 14.0), 14.0), now=14.9)
    assert "once" in guard
    guard.check_and_mark(tokens.verify(tokens.issue([("r", 0)], "q", 15.0), 15.0), now=15.0)
    assert "once" not in guard and len(guard) == 2


def test_replay_guard_fails_closed_when_full_and_survives_a_snapshot() -> None:
    tokens, guard = g_tokens(), ReplayGuard(max_entries=2, grace_s=0)
    claims = [
        tokens.verify(tokens.issue([("r", 0)], f"q{i}", 0.0, ttl_s=10), 0.0) for i in range(3)
    ]
    guard.check_and_mark(claims[0], 0.0)
    guard.check_and_mark(claims[1], 0.0)
    with pytest.raises(ReplayGuardFullError) as info:
        guard.check_and_mark(claims[2], 0.0)
    assert info.value.status_code == 503
    # A guard reloaded with the used ids (see test_feedback_poison for the files) keeps them.
    marked: list[tuple[str, float]] = []
    ReplayGuard(grace_s=0, on_mark=lambda *pair: marked.append(pair)).check_and_mark(claims[0], 0.0)
    restored = ReplayGuard(max_entries=2, grace_s=0)
    assert restored.remember([*marked, (claims[1].token_id, 10.0), ("gone", 0.5)], 1.0) == 2
    with pytest.raises(ReplayedTokenError):
        restored.check_and_mark(claims[0], 1.0)
    restored.check_and_mark(claims[2], 10.0)  # the first two expired at 10: room again
    assert len(restored) == 1


def test_rejected_tokens_change_nothing() -> None:
    """A feedback handler verifies and checks for replay before it touches the policy."""
    tokens, guard = g_tokens(ttl_s=60), ReplayGuard()
    policy = ThompsonBeta(2, random.Random(0))

    def feedback(token: Any, reward: float, now: float) -> None:
        claims = tokens.verify(token, now)
        guard.check_and_mark(claims, now)
        for decision in claims.decisions:
            policy.update(decision.arm, reward)

    good = tokens.issue([("bandit", 1)], "q", now=0.0)
    feedback(good, 1.0, now=1.0)
    before = (json.dumps(policy.to_dict()), len(guard))
    forged = signed_token(
        {"jti": "x", "rid": "q", "iat": 0, "exp": 99, "d": [["bandit", 0]]}, OTHER_KEY
    )
    expired = tokens.issue([("bandit", 0)], "q", now=-100.0)
    for bad in (good, forged, expired, "garbage", good + "x"):
        with pytest.raises(FeedbackTokenError):
            feedback(bad, 1.0, now=2.0)
    assert (json.dumps(policy.to_dict()), len(guard)) == before


def test_errors_share_one_root_with_statuses() -> None:
    for cls, status in [
        (MalformedTokenError, 400),
        (ForgedTokenError, 401),
        (ReplayedTokenError, 409),
        (ExpiredTokenError, 410),
        (ReplayGuardFullError, 503),
    ]:
        assert issubclass(cls, FeedbackTokenError)
        assert issubclass(cls, ValueError) and issubclass(cls, GraphError)
        assert cls.status_code == status
        assert cls("x").to_json() == {"error": cls.__name__, "detail": "x"}


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        g_tokens("short")
    with pytest.raises(ValueError, match="previous feedback signing key must be at least 16"):
        g_tokens(previous_keys=["short"])
    with pytest.raises(ValueError, match="graph"):
        FeedbackTokens(KEY, graph="")


def test_key_rotation_accepts_previous_keys() -> None:
    old = g_tokens(OTHER_KEY).issue([("r", 0)], "q", now=0.0)
    rotated = g_tokens(previous_keys=[OTHER_KEY])
    assert rotated.verify(old, now=1.0).request_id == "q"
    with pytest.raises(ForgedTokenError):
        g_tokens().verify(old, now=1.0)
    # New tokens are signed with the new key.
    assert g_tokens().verify(rotated.issue([("r", 0)], "q", 0.0), 1.0)
