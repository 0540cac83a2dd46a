"""Per-tenant admission policies: token buckets, concurrency shares and who the tenant is.

Pure objects with the clock injected (``now`` arguments), tested without Ray. They sit in
``routing`` because they decide which traffic goes through, as the router policies do; the
budget the ingress replicas share is :mod:`routing.quota_ledger`, one replica's side of it
:mod:`routing.quota_client`, the ASGI layer that applies them :mod:`graphs.admission`.
"""

from __future__ import annotations

import math
from typing import Any

from nodes.errors import GraphError, UnauthorizedError
from routing.hs256 import TokenError, verify_hs256
from routing.limits import MAX_TENANT_NAME, LimitsSpec, TenantLimits

__all__ = [
    "OTHER",
    "MissingTenantError",
    "RateLimitedError",
    "TenantRejectedError",
    "TenantResolver",
    "TokenBucket",
    "describe_limits",
    "retry_after",
]

#: Metric label of the tenants not listed under ``limits.tenants``.
OTHER = "other"


def describe_limits(limits: TenantLimits) -> dict[str, Any]:
    """A tenant's limits as JSON (unset limits left out)."""
    out: dict[str, Any] = {}
    if limits.requests_per_s is not None:
        out["requests_per_s"] = limits.requests_per_s
        out["burst"] = int(limits.bucket_size)
    if limits.max_concurrent is not None:
        out["max_concurrent"] = limits.max_concurrent
    return out


def retry_after(wait_s: float) -> int:
    """``Retry-After`` for a wait of ``wait_s`` seconds: rounded up, at least 1."""
    return max(1, math.ceil(wait_s - 1e-9))


class RateLimitedError(GraphError, RuntimeError):
    """A tenant is over its rate or its concurrency (HTTP 429 with ``Retry-After``).

    Attributes:
        tenant: the tenant's name when it is listed under ``limits.tenants``, else None (the
            default limits applied; an unlisted name is not repeated back).
        limit: the tenant's limits, as :func:`describe_limits` writes them.
        reason: ``rate`` or ``concurrency``.
        retry_after_s: whole seconds after which a retry may pass.
    """

    status_code = 429

    def __init__(self, tenant: str | None, limit: dict[str, Any], reason: str, retry_after_s: int):
        self.tenant = tenant
        self.limit = limit
        self.reason = reason
        self.retry_after_s = retry_after_s
        who = f"tenant {tenant!r}" if tenant is not None else "this tenant (default limits)"
        if reason == "rate":
            what = f"{limit.get('requests_per_s')} requests/s (burst {limit.get('burst')})"
        else:
            what = f"{limit.get('max_concurrent')} concurrent requests"
        super().__init__(f"{who} is over its limit of {what}; retry after {retry_after_s} s")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.tenant, self.limit, self.reason, self.retry_after_s))

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "tenant": self.tenant,
            "limit": self.limit,
            "reason": self.reason,
            "retry_after_s": self.retry_after_s,
        }


class TenantRejectedError(GraphError, PermissionError):
    """The tenant is not listed and ``unknown_tenant`` is ``reject`` (HTTP 403)."""

    status_code = 403


class MissingTenantError(GraphError, ValueError):
    """The request names no usable tenant in the configured header (HTTP 400)."""

    status_code = 400


class TokenBucket:
    """A token bucket: ``capacity`` tokens at most, refilled at ``rate`` per second.

    Args:
        rate: tokens added per second.
        capacity: most tokens held (the burst).
        now: the time the bucket starts at, full unless ``tokens`` is given.
        tokens: tokens to start with.
    """

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float, tokens: float | None = None):
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.tokens = self.capacity if tokens is None else min(float(tokens), self.capacity)
        self.updated = now

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last update (a clock going back earns none)."""
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, now: float, n: float = 1.0) -> bool:
        """Take ``n`` tokens if there are that many."""
        self.refill(now)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def grant(self, now: float, want: int) -> int:
        """Take up to ``want`` whole tokens; how many were taken."""
        self.refill(now)
        granted = max(0, min(int(want), math.floor(self.tokens)))
        self.tokens -= granted
        return granted

    def give_back(self, now: float, n: float) -> None:
        """Return ``n`` unused tokens (never past the capacity)."""
        self.refill(now)
        self.tokens = min(self.capacity, self.tokens + n)

    def wait_s(self, now: float, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens are there (0 when they are now)."""
        self.refill(now)
        return max(0.0, (n - self.tokens) / self.rate)

    def full(self, now: float) -> bool:
        """Whether the bucket is full (forgetting it loses nothing)."""
        self.refill(now)
        return self.tokens >= self.capacity


class TenantResolver:
    """Names the tenant of a request from the configured header or a verified HS256 token,
    and finds its limits.

    Args:
        limits: the graph's ``limits:`` section (with a ``tenant`` source).
        key: the HS256 key (``jwt_claim`` sources only).
    """

    def __init__(self, limits: LimitsSpec, key: bytes | None = None):
        if limits.tenant is None:
            raise ValueError("limits.tenant is not set: no tenant to resolve")
        self.limits = limits
        self.source = limits.tenant
        if self.source.jwt_claim is not None and not key:
            raise ValueError(
                f"limits.tenant.jwt_claim needs the HS256 key in ${self.source.key_env}"
            )
        self.key = key or b""
        #: The (lower-case) request header the tenant comes from.
        self.header = (self.source.header or "authorization").lower()

    def resolve(self, value: str | None, now: float) -> str:
        """The tenant of a request whose :attr:`header` is ``value`` (None: absent).

        Raises:
            UnauthorizedError: no, a malformed, forged or expired token, or one without the
                claim (``jwt_claim`` sources; 401).
            MissingTenantError: no header and no ``anonymous`` tenant, or an unusable name
                (header sources; 400).
        """
        source = self.source
        if source.jwt_claim is None:
            if value is None or not value.strip():
                if source.anonymous is None:
                    raise MissingTenantError(f"header {source.header}: required (names the tenant)")
                return source.anonymous
            name = value.strip()
            if len(name) > MAX_TENANT_NAME or not name.isprintable():
                raise MissingTenantError(
                    f"header {source.header}: must be 1 to {MAX_TENANT_NAME} printable characters"
                )
            return name
        scheme, _, token = (value or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError("send 'Authorization: Bearer <token>' (an HS256 JWT)")
        try:
            claims = verify_hs256(
                token.strip(),
                self.key,
                now,
                leeway_s=source.leeway_s,
                audience=source.audience,
                issuer=source.issuer,
            )
        except TokenError as exc:
            raise UnauthorizedError(f"bearer token refused: {exc}") from None
        claim = claims.get(source.jwt_claim)
        if isinstance(claim, bool) or not isinstance(claim, (str, int)):
            raise UnauthorizedError(
                f"bearer token refused: no string claim {source.jwt_claim!r} naming the tenant"
            )
        name = str(claim)
        if not name or len(name) > MAX_TENANT_NAME or not name.isprintable():
            raise UnauthorizedError(
                f"bearer token refused: claim {source.jwt_claim!r} must be 1 to "
                f"{MAX_TENANT_NAME} printable characters"
            )
        return name

    def limits_of(self, tenant: str) -> TenantLimits:
        """The limits of ``tenant``.

        Raises:
            TenantRejectedError: the tenant is not listed and unknown tenants are refused.
        """
        limits = self.limits.limits_of(tenant)
        if limits is None:
            raise TenantRejectedError(
                "tenant not allowed: this graph serves only the tenants listed in its limits"
            )
        return limits

    def label(self, tenant: str) -> str:
        """The tenant's metric label: its name when listed, else ``other``."""
        return tenant if tenant in self.limits.tenants else OTHER
