"""Per-tenant admission policies without Ray: the token bucket, HS256 tenant tokens, tenant
resolution and the ``limits:`` spec section."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from graphs.validate import parse_graph
from nodes.errors import GraphValidationError, UnauthorizedError
from routing.hs256 import TokenError, issue_hs256, verify_hs256
from routing.limits import LimitsSpec, TenantLimits
from routing.quotas import (
    MissingTenantError,
    RateLimitedError,
    TenantRejectedError,
    TenantResolver,
    TokenBucket,
    retry_after,
)

KEY = b"k" * 32
NOW = 1_700_000_000.0


# --- token bucket ----------------------------------------------------------------------------


def test_bucket_starts_full_and_refills_at_its_rate() -> None:
    b = TokenBucket(rate=2.0, capacity=4.0, now=0.0)
    assert [b.take(0.0) for _ in range(5)] == [True] * 4 + [False]
    assert b.wait_s(0.0) == pytest.approx(0.5)
    assert not b.take(0.25)  # half a token
    assert b.take(0.5)
    b.refill(100.0)
    assert b.tokens == 4.0  # never past the capacity


def test_bucket_grants_whole_tokens_up_to_what_it_holds() -> None:
    b = TokenBucket(rate=10.0, capacity=10.0, now=0.0, tokens=3.7)
    assert b.grant(0.0, 5) == 3
    assert b.tokens == pytest.approx(0.7)
    assert b.grant(0.0, 5) == 0
    assert b.wait_s(0.0) == pytest.approx(0.03)
    assert b.grant(1.0, 100) == 10


def test_bucket_ignores_a_clock_going_back_and_gives_back_within_capacity() -> None:
    b = TokenBucket(rate=1.0, capacity=2.0, now=10.0, tokens=0.0)
    b.refill(5.0)
    assert b.tokens == 0.0
    b.give_back(10.0, 5)
    assert b.tokens == 2.0 and b.full(10.0)


def test_retry_after_rounds_up_to_whole_seconds_at_least_one() -> None:
    assert [retry_after(w) for w in (0.0, 0.01, 1.0, 1.2, 2.9)] == [1, 1, 1, 2, 3]


# --- HS256 ---------------------------------------------------------------------------------


def _b64(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_a_good_token_verifies_and_gives_its_claims() -> None:
    token = issue_hs256({"sub": "acme", "exp": NOW + 60}, KEY)
    assert verify_hs256(token, KEY, NOW)["sub"] == "acme"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (issue_hs256({"sub": "a", "exp": NOW + 60}, b"x" * 32), "signature"),
        (issue_hs256({"sub": "a", "exp": NOW - 61}, KEY), "expired"),
        (issue_hs256({"sub": "a"}, KEY), "exp"),
        (issue_hs256({"sub": "a", "exp": NOW + 60, "nbf": NOW + 100}, KEY), "not valid yet"),
        (f"{_b64({'alg': 'none'})}.{_b64({'sub': 'a', 'exp': NOW + 60})}.", "HS256"),
        (f"{_b64({'alg': 'HS512'})}.{_b64({'sub': 'a', 'exp': NOW + 60})}.c2ln", "HS256"),
        ("not-a-token", "not a JWT"),
        ("a.b.c.d", "not a JWT"),
        ("x" * 9000, "longer"),
        (f"{_b64({'alg': 'HS256'})}.{_b64(['list'])}.!!!", "base64url"),
    ],
)
def test_bad_tokens_are_refused_saying_why(token: str, reason: str) -> None:
    with pytest.raises(TokenError, match=reason) as info:
        verify_hs256(token, KEY, NOW, leeway_s=0)
    assert token[:20] not in str(info.value) or len(token) < 20


def test_the_payload_is_read_only_after_the_signature_checks() -> None:
    good = issue_hs256({"sub": "a", "exp": NOW + 60}, KEY)
    header, _, signature = good.split(".")
    forged = f"{header}.{_b64({'sub': 'admin', 'exp': NOW + 60})}.{signature}"
    with pytest.raises(TokenError, match="signature"):
        verify_hs256(forged, KEY, NOW)


def test_leeway_audience_and_issuer() -> None:
    token = issue_hs256({"sub": "a", "exp": NOW - 10, "aud": ["x", "y"], "iss": "me"}, KEY)
    assert verify_hs256(token, KEY, NOW, leeway_s=30, audience="y", issuer="me")
    with pytest.raises(TokenError, match="audience"):
        verify_hs256(token, KEY, NOW, leeway_s=30, audience="z")
    with pytest.raises(TokenError, match="issuer"):
        verify_hs256(token, KEY, NOW, leeway_s=30, issuer="you")


# --- tenant resolution -----------------------------------------------------------------------


def header_limits(**kwargs: Any) -> LimitsSpec:
    return LimitsSpec.model_validate(
        {
            "tenant": {"header": "X-Tenant"},
            "default": {"requests_per_s": 5},
            "tenants": {"gold": {"requests_per_s": 50, "max_concurrent": 4}},
            **kwargs,
        }
    )


def jwt_limits(**source: Any) -> LimitsSpec:
    return LimitsSpec.model_validate(
        {"tenant": {"jwt_claim": "sub", **source}, "default": {"max_concurrent": 2}}
    )


def test_header_tenants_default_and_listed_limits() -> None:
    r = TenantResolver(header_limits())
    assert r.header == "x-tenant"
    assert r.resolve(" gold ", NOW) == "gold"
    assert r.limits_of("gold").requests_per_s == 50
    assert r.limits_of("someone").requests_per_s == 5
    assert (r.label("gold"), r.label("someone")) == ("gold", "other")
    assert r.resolve(None, NOW) == "anonymous"


def test_header_tenants_missing_or_unusable_are_400_and_unlisted_403_under_reject() -> None:
    r = TenantResolver(header_limits(tenant={"header": "X-Tenant", "anonymous": None}))
    with pytest.raises(MissingTenantError, match="X-Tenant") as info:
        r.resolve(None, NOW)
    assert info.value.status_code == 400
    with pytest.raises(MissingTenantError):
        r.resolve("x" * 129, NOW)
    strict = TenantResolver(header_limits(unknown_tenant="reject"))
    with pytest.raises(TenantRejectedError) as rejected:
        strict.limits_of("someone")
    assert rejected.value.status_code == 403 and "someone" not in str(rejected.value)


def test_jwt_tenants_come_from_the_verified_claim() -> None:
    r = TenantResolver(jwt_limits(), KEY)
    assert r.header == "authorization"
    token = issue_hs256({"sub": "acme", "exp": NOW + 60}, KEY)
    assert r.resolve(f"Bearer {token}", NOW) == "acme"
    assert r.resolve(f"bearer  {token}", NOW) == "acme"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Basic dXNlcjpwdw==",
        "Bearer ",
        f"Bearer {issue_hs256({'sub': 'acme', 'exp': NOW + 60}, b'y' * 32)}",  # bad signature
        f"Bearer {issue_hs256({'sub': 'acme', 'exp': NOW - 3600}, KEY)}",  # expired
        f"Bearer {issue_hs256({'org': 'acme', 'exp': NOW + 60}, KEY)}",  # no claim
        f"Bearer {issue_hs256({'sub': {'x': 1}, 'exp': NOW + 60}, KEY)}",  # not a string
        f"Bearer {_b64({'alg': 'none'})}.{_b64({'sub': 'acme', 'exp': NOW + 60})}.",
    ],
)
def test_jwt_tenants_without_a_good_token_are_401_and_the_token_is_not_echoed(
    header: str | None,
) -> None:
    r = TenantResolver(jwt_limits(), KEY)
    with pytest.raises(UnauthorizedError) as info:
        r.resolve(header, NOW)
    assert info.value.status_code == 401
    if header and len(header) > 20:
        assert header.split(" ", 1)[1][:16] not in json.dumps(info.value.to_json())


def test_jwt_source_needs_a_key() -> None:
    with pytest.raises(ValueError, match="SERVEGRAPH_TENANT_JWT_KEY"):
        TenantResolver(jwt_limits())


def test_rate_limited_error_names_the_limit_but_not_an_unlisted_tenant() -> None:
    exc = RateLimitedError(None, {"requests_per_s": 5.0, "burst": 5}, "rate", 2)
    body = exc.to_json()
    assert exc.status_code == 429 and exc.retry_after_s == 2
    assert body["limit"] == {"requests_per_s": 5.0, "burst": 5} and body["tenant"] is None
    assert "5.0 requests/s" in body["detail"]


# --- the spec --------------------------------------------------------------------------------

GRAPH = {
    "name": "g",
    "inputs": [{"name": "x"}],
    "nodes": [{"kind": "preprocess", "name": "p", "function": "m:f"}],
    "entry": "p",
}


@pytest.mark.parametrize(
    ("limits", "path", "words"),
    [
        ({"tenants": {"a": {}}}, "graph.limits", "need tenant"),
        ({"tenant": {"header": "X-T", "jwt_claim": "sub"}}, "graph.limits.tenant", "exactly one"),
        ({"tenant": {}}, "graph.limits.tenant", "exactly one"),
        ({"tenant": {"header": "X-T", "issuer": "i"}}, "graph.limits.tenant", "jwt_claim only"),
        ({"tenant": {"header": "X-T"}, "unknown_tenant": "reject"}, "graph.limits", "reject"),
        ({"tenant": {"header": "X-T"}, "tenants": {"other": {}}}, "graph.limits.tenants", "other"),
        (
            {"tenant": {"header": "X-T"}, "default": {"burst": 2}},
            "graph.limits.default",
            "requests_per_s",
        ),
        (
            {"tenant": {"header": "X-T"}, "tenants": {"a": {"requests_per_s": 0}}},
            "graph.limits.tenants.a.requests_per_s",
            "greater than 0",
        ),
        ({"max_in_flight": 0}, "graph.limits.max_in_flight", "greater than or equal to 1"),
        ({"tenant": {"jwt_claim": "sub", "key_env": "1X"}}, "graph.limits.tenant.key_env", ""),
        ({"retry_after": 2}, "graph.limits.retry_after", "unknown key"),
    ],
)
def test_bad_limits_are_refused_naming_the_path(
    limits: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(GraphValidationError) as info:
        parse_graph({**GRAPH, "limits": limits}, check_imports=False)
    (where, message), *_ = info.value.issues
    assert where == path and words in message, info.value.issues


def test_max_in_flight_must_be_below_the_ingress_max_ongoing() -> None:
    graph = {**GRAPH, "ingress": {"max_ongoing_requests": 8}, "limits": {"max_in_flight": 8}}
    with pytest.raises(GraphValidationError) as info:
        parse_graph(graph, check_imports=False)
    assert info.value.issues[0][0] == "graph.limits.max_in_flight"
    graph["limits"] = {"max_in_flight": 6}
    assert parse_graph(graph, check_imports=False).limits.max_in_flight == 6


def test_limits_defaults() -> None:
    spec = parse_graph(GRAPH, check_imports=False)
    limits = spec.limits
    assert limits.tenant is None and not limits.per_tenant
    assert (limits.max_in_flight, limits.retry_after_s, limits.max_tenants) == (None, 1, 10_000)
    assert (limits.lease_s, limits.sync_interval_s, limits.unknown_tenant) == (0.25, 0.1, "default")
    assert TenantLimits(requests_per_s=2.5).bucket_size == 3.0
    assert TenantLimits(requests_per_s=0.1).bucket_size == 1.0
    assert TenantLimits(requests_per_s=10, burst=50).bucket_size == 50.0
    assert not TenantLimits().limited
