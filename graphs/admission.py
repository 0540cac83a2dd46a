"""Admission control at the ingress: :class:`AdmissionGate`, the ASGI layer that answers before
any work starts (before the body is read), and :class:`Admission`, what it decides with.

For every request that does work (any method but GET, HEAD and OPTIONS, except the operators'
``/routers/...`` control actions):

1. the tenant, from the configured header or a verified HS256 bearer token (401 when the token
   is missing or refused, 400 without a usable header, 403 for an unlisted tenant under
   ``unknown_tenant: reject``);
2. the tenant's concurrency share and tokens (:class:`~routing.quota_client.ReplicaQuotas`,
   shared by the ingress replicas through :mod:`routing.quota_ledger`): 429 with Retry-After;
3. the replica's in-flight cap (``limits.max_in_flight``): 503 with Retry-After.

The tenant check comes first, so a tenant flooding the graph is refused by its own limits and
never fills the in-flight cap the other tenants need. Each outcome is counted in
``servegraph_admission{graph, tenant, outcome}`` (tenant: a listed name, else ``other``).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from graphs.defaults import ORCHESTRATION_MAX_ONGOING, default_max_in_flight
from graphs.middleware import ASGIApp, Receive, Scope, Send, error_body, error_headers, send_json
from graphs.openai_protocol import OpenAIError
from graphs.spec import GraphSpec
from nodes.errors import GraphError, OverloadedError, UnauthorizedError
from routing.quota_client import LedgerCall, ReplicaQuotas, Ticket
from routing.quota_ledger import get_quota_actor, ledger_call
from routing.quotas import OTHER, RateLimitedError, TenantResolver, describe_limits

__all__ = ["OUTCOMES", "Admission", "AdmissionGate", "admission_for"]

log = logging.getLogger("servegraph")

#: The ``outcome`` label values of ``servegraph_admission``.
OUTCOMES = ("admitted", "rate_limited", "concurrency_limited", "overloaded", "refused")
_EXEMPT_METHODS = ("GET", "HEAD", "OPTIONS")


class Admission:
    """One ingress replica's admission decisions, counts and ``/graph`` figures.

    Args:
        spec: the graph.
        max_ongoing: the ingress deployment's ``max_ongoing_requests`` (sizes the default
            in-flight cap).
        ledger: builds the call to the shared budget (None: each replica alone, e.g. tests).
        key: the HS256 key (``tenant.jwt_claim`` graphs); default: ``$<tenant.key_env>``.
        replicas: the replica count to divide limits by until the shared budget answers.
        clock: monotonic seconds (rates); ``wall``: Unix time (token expiry).
        metrics: what counts outcomes (``inc(tags=...)``); default: a Ray counter made on first
            use, when Ray is initialised.
    """

    def __init__(
        self,
        spec: GraphSpec,
        max_ongoing: int = ORCHESTRATION_MAX_ONGOING,
        *,
        ledger: Callable[[], LedgerCall] | None = None,
        key: bytes | None = None,
        replicas: int = 1,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        metrics: Any = None,
    ):
        limits = spec.limits
        self.graph = spec.name
        self.limits = limits
        self.max_in_flight = limits.max_in_flight or default_max_in_flight(max_ongoing)
        self.in_flight = 0
        self.wall = wall
        self.resolver: TenantResolver | None = None
        self.quotas: ReplicaQuotas | None = None
        self.ledger = ledger
        if limits.tenant is not None:
            if limits.tenant.jwt_claim is not None and key is None:
                key = os.environ.get(limits.tenant.key_env, "").encode() or None
                if key is None:
                    raise ValueError(
                        f"graph {spec.name}: limits.tenant.jwt_claim needs the HS256 key in "
                        f"${limits.tenant.key_env} on the ingress replicas; it is not set"
                    )
                if len(key) < 32:
                    log.warning(
                        "$%s holds fewer than 32 bytes: a weak HS256 key", limits.tenant.key_env
                    )
            self.resolver = TenantResolver(limits, key)
            self.quotas = ReplicaQuotas(limits, clock, replicas)
        self.counts: dict[str, dict[str, int]] = {}
        self._metrics = metrics
        self._metrics_tried = metrics is not None

    def gated(self, scope: Scope) -> bool:
        """Whether the request is admission-controlled (it does work)."""
        if scope.get("method") in _EXEMPT_METHODS:
            return False
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        return not path.startswith("/routers/")

    async def enter(self, scope: Scope) -> Ticket | None:
        """Let a request in, or raise the error it is answered with.

        Returns:
            The tenant's ticket for :meth:`leave` (None without per-tenant limits).

        Raises:
            GraphError: 400/401/403 (tenant), 429 (tenant limits), 503 (in-flight cap).
        """
        ticket: Ticket | None = None
        label = OTHER
        if self.resolver is not None and self.quotas is not None:
            try:
                tenant = self.resolver.resolve(_header(scope, self.resolver.header), self.wall())
                label = self.resolver.label(tenant)
                limits = self.resolver.limits_of(tenant)
            except GraphError:
                self.count(label, "refused")
                raise
            if limits.limited:
                if self.ledger is not None:
                    await self.quotas.started(self.ledger)
                try:
                    ticket = await self.quotas.admit_or_wait(tenant, limits)
                except RateLimitedError as exc:
                    self.count(label, f"{exc.reason}_limited")
                    raise
                except OverloadedError:
                    self.count(label, "overloaded")
                    raise
        if self.in_flight >= self.max_in_flight:
            if ticket is not None and self.quotas is not None:
                self.quotas.release(ticket)
                self.quotas.refund(ticket)
            self.count(label, "overloaded")
            raise OverloadedError(
                f"the graph is overloaded: {self.in_flight} requests in progress on this "
                f"replica (limits.max_in_flight={self.max_in_flight}); retry after "
                f"{self.limits.retry_after_s} s",
                retry_after_s=self.limits.retry_after_s,
            )
        self.in_flight += 1
        self.count(label, "admitted")
        return ticket

    def leave(self, ticket: Ticket | None) -> None:
        """A request let in by :meth:`enter` ended: answered, failed or abandoned."""
        self.in_flight -= 1
        if ticket is not None and self.quotas is not None:
            self.quotas.release(ticket)

    def count(self, label: str, outcome: str) -> None:
        """Count one outcome for a tenant label (here and in the Ray metric)."""
        by_outcome = self.counts.setdefault(label, dict.fromkeys(OUTCOMES, 0))
        by_outcome[outcome] += 1
        counter = self._counter()
        if counter is not None:
            counter.inc(tags={"graph": self.graph, "tenant": label, "outcome": outcome})

    def _counter(self) -> Any:
        if not self._metrics_tried:
            self._metrics_tried = True
            try:
                import ray
                from ray.util import metrics

                if ray.is_initialized():
                    self._metrics = metrics.Counter(
                        "servegraph_admission",
                        description="Requests at a graph's ingress by tenant (a listed name, "
                        "else other) and outcome: admitted, rate_limited, concurrency_limited, "
                        "overloaded, refused.",
                        tag_keys=("graph", "tenant", "outcome"),
                    )
            except Exception as exc:  # metrics are a nicety: admission works without them
                log.warning("admission: no servegraph_admission metric (%r)", exc)
        return self._metrics

    def describe(self) -> dict[str, Any]:
        """The limits and this replica's live figures, for ``GET /<graph>/graph``."""
        limits = self.limits
        view: dict[str, Any] = {
            "max_in_flight": self.max_in_flight,
            "in_flight": self.in_flight,
            "retry_after_s": limits.retry_after_s,
            "tenant": limits.tenant.describe() if limits.tenant is not None else None,
            "counts": {label: dict(c) for label, c in self.counts.items()},
        }
        if limits.tenant is not None:
            view["default"] = describe_limits(limits.default)
            view["tenants"] = {n: describe_limits(t) for n, t in limits.tenants.items()}
            view["unknown_tenant"] = limits.unknown_tenant
            view["sharing"] = {"lease_s": limits.lease_s, "sync_interval_s": limits.sync_interval_s}
        if self.quotas is not None:
            view["replica"] = self.quotas.describe()
        return view


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode("latin-1")
    for key, value in scope.get("headers", ()):
        if key.lower() == wanted:
            return bytes(value).decode("latin-1")
    return None


class AdmissionGate:
    """The ASGI layer: refuses what :class:`Admission` refuses with a JSON answer before the
    inner app runs, and counts a request out when the inner app returns or raises (an error, a
    client that went away), so nothing leaks."""

    def __init__(self, inner: ASGIApp, admission: Admission):
        self.inner = inner
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.admission.gated(scope):
            return await self.inner(scope, receive, send)
        try:
            ticket = await self.admission.enter(scope)
        except GraphError as exc:
            return await _refuse(send, exc, scope.get("path", ""))
        try:
            await self.inner(scope, receive, send)
        finally:
            self.admission.leave(ticket)


async def _refuse(send: Send, exc: GraphError, path: str) -> None:
    """Answer a refusal as JSON: OpenAI's error shape on ``/v1/`` routes, the Open Inference
    Protocol's on ``/v2/``, the graph's own elsewhere; with ``Retry-After`` on 429/503 and
    ``WWW-Authenticate`` on 401."""
    headers = error_headers(exc)
    if isinstance(exc, UnauthorizedError):
        headers["WWW-Authenticate"] = 'Bearer realm="servegraph"'
    if "/v1/" not in path:
        return await send_json(send, exc.status_code, error_body(exc, path), headers)
    kind = "server_error" if exc.status_code >= 500 else "invalid_request_error"
    code = {429: "rate_limit_exceeded", 503: "overloaded", 401: "invalid_api_key"}
    if exc.status_code == 429:
        kind = "rate_limit_error"
    error = OpenAIError(exc.status_code, str(exc), type=kind, code=code.get(exc.status_code))
    await send_json(send, exc.status_code, error.body(), headers)


def admission_for(spec: GraphSpec) -> Admission:
    """The admission of one ingress replica inside Ray Serve: its deployment's
    max_ongoing_requests and replica count from the replica context, the budget shared through
    the application's ledger actor (:func:`routing.quota_ledger.get_quota_actor`)."""
    from ray import serve

    try:
        context = serve.get_replica_context()
    except Exception:  # built outside a replica (scripts, tests): no shared budget
        return Admission(spec, spec.ingress.max_ongoing_requests or ORCHESTRATION_MAX_ONGOING)
    config = getattr(context, "_deployment_config", None)
    max_ongoing = getattr(config, "max_ongoing_requests", None) or ORCHESTRATION_MAX_ONGOING
    replica = f"{context.replica_tag}-{uuid.uuid4().hex[:8]}"
    app = context.app_name

    def ledger() -> LedgerCall:
        return ledger_call(get_quota_actor(app), spec.limits, replica)

    replicas = int(getattr(context, "world_size", 1) or 1)
    return Admission(spec, max_ongoing, ledger=ledger, replicas=replicas)
