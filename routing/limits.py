"""Admission limits of a graph: the ``limits:`` section of the graph spec.

Part of the spec (the bottom layer): pure pydantic models, no behaviour. What enforces them:
:mod:`routing.quotas` (token buckets, concurrency, tenant resolution),
:mod:`routing.quota_ledger` (the budget the ingress replicas share) and
:mod:`routing.quota_client` (one replica's side), applied at the ingress by
:mod:`graphs.admission`.

Example (YAML)::

    limits:
      max_in_flight: 200             # per ingress replica; more get 503 + Retry-After
      max_tokens: 256                # LLM graphs: per OpenAI request (400 above)
      tenant: {header: X-Tenant}     # or {jwt_claim: sub, key_env: TENANT_JWT_KEY}
      default: {requests_per_s: 20, burst: 40, max_concurrent: 8}
      tenants:
        gold: {requests_per_s: 200, burst: 400, max_concurrent: 64}
      unknown_tenant: default        # or reject (403)
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from nodes.spec import Frozen

__all__ = [
    "ENV_PATTERN",
    "MAX_TENANT_NAME",
    "LimitsSpec",
    "TenantLimits",
    "TenantSource",
]

#: Longest tenant name taken from a header or a token claim; longer ones are refused (400/401).
MAX_TENANT_NAME = 128
#: An environment variable's name.
ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_HEADER_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$"


class TenantSource(Frozen):
    """Where a request's tenant name comes from: a header, or a claim of a signed token."""

    header: str | None = Field(
        None,
        pattern=_HEADER_PATTERN,
        description="HTTP header whose value names the tenant, e.g. X-Tenant. Clients can send "
        "any value: use it behind a gateway that sets the header, or use jwt_claim.",
    )
    jwt_claim: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Claim of an HS256 JWT in 'Authorization: Bearer <token>' that names the "
        "tenant, e.g. sub. Tokens are verified with the key in key_env; a missing, forged or "
        "expired token is a 401.",
    )
    key_env: str = Field(
        "SERVEGRAPH_TENANT_JWT_KEY",
        pattern=ENV_PATTERN,
        description="Environment variable of the ingress replicas holding the HS256 key "
        "(jwt_claim only; give it at least 32 bytes).",
    )
    audience: str | None = Field(
        None, description="When set, tokens must carry this 'aud' (jwt_claim only)."
    )
    issuer: str | None = Field(
        None, description="When set, tokens must carry this 'iss' (jwt_claim only)."
    )
    leeway_s: float = Field(
        30.0,
        ge=0,
        le=600,
        description="Clock skew allowed when checking a token's exp and nbf (jwt_claim only).",
    )
    anonymous: str | None = Field(
        "anonymous",
        min_length=1,
        max_length=MAX_TENANT_NAME,
        description="Tenant of requests without the header (header only); null refuses them "
        "with 400.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> TenantSource:
        if (self.header is None) == (self.jwt_claim is None):
            raise ValueError(
                "give exactly one of header (e.g. {header: X-Tenant}) or jwt_claim "
                "(e.g. {jwt_claim: sub, key_env: TENANT_JWT_KEY})"
            )
        if self.header is not None:
            jwt_only = [
                k
                for k in ("audience", "issuer", "key_env", "leeway_s")
                if k in self.model_fields_set
            ]
            if jwt_only:
                raise ValueError(f"{', '.join(jwt_only)}: apply to jwt_claim only, not to header")
        return self

    def describe(self) -> dict[str, object]:
        """What ``/graph`` shows: where tenants come from (never a key)."""
        if self.header is not None:
            return {"header": self.header, "anonymous": self.anonymous}
        return {"jwt_claim": self.jwt_claim, "key_env": self.key_env, "algorithm": "HS256"}


class TenantLimits(Frozen):
    """One tenant's limits, over all ingress replicas together; an unset limit is no limit."""

    requests_per_s: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description="Sustained requests per second; more get 429 with Retry-After.",
    )
    burst: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="Requests allowed at once after a quiet spell (the token bucket's size); "
        "default: one second's worth of requests_per_s (at least 1).",
    )
    max_concurrent: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Requests in progress at once; more get 429. Split among the live "
        "ingress replicas.",
    )

    @model_validator(mode="after")
    def _burst_needs_rate(self) -> TenantLimits:
        if self.burst is not None and self.requests_per_s is None:
            raise ValueError("burst: needs requests_per_s (the rate the bucket refills at)")
        return self

    @property
    def bucket_size(self) -> float:
        """The token bucket's capacity: ``burst``, else one second of the rate (at least 1)."""
        if self.burst is not None:
            return float(self.burst)
        return float(max(1, math.ceil(self.requests_per_s or 1)))

    @property
    def limited(self) -> bool:
        """Whether any limit is set."""
        return self.requests_per_s is not None or self.max_concurrent is not None


class LimitsSpec(Frozen):
    """Admission control at the ingress: an in-flight cap per replica (503) and per-tenant
    rates and concurrency (429), checked before a request's body is read."""

    max_in_flight: int | None = Field(
        None,
        ge=1,
        description="Requests one ingress replica works on at once; more get 503 with "
        "Retry-After before any work starts. Default: 3/4 of the ingress's "
        "max_ongoing_requests, so the excess reaches a replica and gets a quick JSON 503 "
        "instead of waiting in Serve's queue.",
    )
    retry_after_s: int = Field(
        1, ge=1, le=3600, description="Retry-After (seconds) of the overload 503."
    )
    max_tokens: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="LLM graphs: most tokens one OpenAI request may ask for (max_tokens, "
        "max_completion_tokens, min_tokens); more get 400 naming the field, and the OpenAPI "
        "document states the maximum. Unset: up to the model's context.",
    )
    tenant: TenantSource | None = Field(
        None,
        description="Where the tenant name comes from; unset: no per-tenant limits.",
    )
    default: TenantLimits = Field(
        default_factory=lambda: TenantLimits(),
        description="Limits of each tenant not listed under tenants (each gets its own "
        "budget of this size).",
    )
    tenants: dict[str, TenantLimits] = Field(
        default_factory=dict,
        description="Limits by tenant name; these names are also the tenant label of the "
        "servegraph_admission metric (every other tenant counts as 'other').",
    )
    unknown_tenant: Literal["default", "reject"] = Field(
        "default",
        description="Tenants not listed under tenants: default (the default limits) or "
        "reject (403).",
    )
    max_tenants: int = Field(
        10_000,
        ge=16,
        le=1_000_000,
        description="Most tenants tracked at once (per replica and in the shared budget); the "
        "longest idle are forgotten first, so memory stays bounded.",
    )
    lease_s: float = Field(
        0.25,
        gt=0,
        le=10,
        description="Each ingress replica leases a tenant's tokens from the shared budget this "
        "many seconds of its rate at a time; the most the replicas together can admit above "
        "the rate is this much of it per replica.",
    )
    sync_interval_s: float = Field(
        0.1,
        gt=0,
        le=5,
        description="How often each ingress replica syncs with the shared budget (one call "
        "for all tenants: leases, concurrency shares, heartbeat).",
    )

    @field_validator("tenants")
    @classmethod
    def _tenant_names(cls, tenants: dict[str, TenantLimits]) -> dict[str, TenantLimits]:
        for name in tenants:
            if not name or len(name) > MAX_TENANT_NAME or not name.isprintable():
                raise ValueError(
                    f"tenant name {name[:40]!r}: must be 1 to {MAX_TENANT_NAME} printable "
                    "characters"
                )
            if name == "other":
                raise ValueError("tenant name 'other' is the metric label of unlisted tenants")
        return tenants

    @model_validator(mode="after")
    def _tenants_need_a_source(self) -> LimitsSpec:
        if self.tenant is None:
            used = [
                k for k in ("default", "tenants", "unknown_tenant") if k in self.model_fields_set
            ]
            if used:
                raise ValueError(
                    f"{', '.join(used)}: need tenant, where the tenant name comes from "
                    "(e.g. tenant: {header: X-Tenant})"
                )
        if self.unknown_tenant == "reject" and not self.tenants:
            raise ValueError("unknown_tenant: reject needs tenants, the tenants let in")
        return self

    @property
    def per_tenant(self) -> bool:
        """Whether requests are limited per tenant."""
        return self.tenant is not None

    def limits_of(self, tenant: str) -> TenantLimits | None:
        """The limits of ``tenant``; None when it is not let in (``unknown_tenant: reject``)."""
        if tenant in self.tenants:
            return self.tenants[tenant]
        return self.default if self.unknown_tenant == "default" else None
