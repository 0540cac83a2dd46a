"""The per-tenant budget every ingress replica of a graph shares: :class:`QuotaLedger`.

One ledger per graph holds, for each tenant, the global token bucket (``requests_per_s``,
``burst``) and the concurrency each replica may use (``max_concurrent`` split among the live
replicas). Replicas never ask per request: each syncs every ``sync_interval_s`` with one call
(:class:`~routing.quota_client.ReplicaQuotas`) that leases tokens in chunks, reports its requests
in progress and heartbeats.

- Tokens: a lease is taken from the tenant's bucket, so the replicas together admit at most what
  the bucket granted plus what each holds (at most one chunk, ``lease_s`` of the rate) — see
  the README ("Admission control") for the bound.
- Concurrency: each replica's share is a lease too. The target split, among the live replicas,
  follows demand (requests in progress plus those refused for want of a share, plus one per
  replica so none is shut out),
  but a replica only gets what the others do not hold, and keeps what it is still using, so the
  shares held never add up to more than ``max_concurrent``.
- Liveness: a replica that has not synced for ``replica_ttl_s`` is dropped with its shares.

:class:`QuotaLedgerActor` is the thin Ray actor around ledgers (named per application,
detached, like :func:`routing.store.get_state_actor`); its state is in memory: a restarted
actor starts with full buckets.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from routing.limits import LimitsSpec, TenantLimits
from routing.quotas import TokenBucket, describe_limits

__all__ = [
    "QuotaLedger",
    "QuotaLedgerActor",
    "get_quota_actor",
    "ledger_actor_name",
    "ledger_call",
    "limits_hash",
    "replica_ttl_s",
    "split_shares",
]

#: Ledgers of older configs kept by the actor (replicas of a rolling update keep theirs).
MAX_CONFIGS = 4
#: Entries scanned for one that can be forgotten losslessly before the oldest goes.
_EVICT_SCAN = 64


def limits_hash(limits: LimitsSpec) -> str:
    """A short hash of a ``limits:`` section: replicas with the same one share a ledger."""
    return hashlib.sha256(limits.model_dump_json().encode()).hexdigest()[:16]


def replica_ttl_s(limits: LimitsSpec) -> float:
    """How long a replica that stopped syncing still counts (and holds its shares)."""
    return max(2.0, 20 * limits.sync_interval_s)


def split_shares(total: int, demand: Mapping[str, int]) -> dict[str, int]:
    """``total`` split among the replicas of ``demand`` in proportion to demand + 1, by largest
    remainder (ties to the lower replica id); the parts add up to ``total`` exactly."""
    if not demand:
        return {}
    weights = {r: d + 1 for r, d in demand.items()}
    whole = sum(weights.values())
    exact = {r: total * w / whole for r, w in weights.items()}
    parts = {r: int(x) for r, x in exact.items()}
    left = total - sum(parts.values())
    for r in sorted(exact, key=lambda r: (parts[r] - exact[r], r))[:left]:
        parts[r] += 1
    return parts


class _Budget:
    """One tenant's shared state."""

    __slots__ = ("assigned", "bucket", "demand", "limits")

    def __init__(self, limits: TenantLimits, now: float):
        self.limits = limits
        self.bucket = (
            TokenBucket(limits.requests_per_s, limits.bucket_size, now)
            if limits.requests_per_s is not None
            else None
        )
        self.assigned: dict[str, int] = {}  # replica -> concurrency share it holds
        self.demand: dict[str, int] = {}  # replica -> in progress + refused at its last sync

    def idle(self, now: float) -> bool:
        return not self.assigned and (self.bucket is None or self.bucket.full(now))


class QuotaLedger:
    """The shared budget of one graph's ``limits:`` (pure: every call takes ``now``).

    Args:
        limits: the graph's ``limits:`` section.
        now: the time it starts at.
    """

    def __init__(self, limits: LimitsSpec, now: float):
        self.limits = limits
        self.created = now
        self._budgets: OrderedDict[str, _Budget] = OrderedDict()
        self._seen: dict[str, float] = {}  # replica -> last sync
        self._held: dict[str, set[str]] = {}  # replica -> tenants it holds a share of
        self.syncs = 0

    def live(self, now: float) -> list[str]:
        """The replicas that synced within :func:`replica_ttl_s`."""
        ttl = replica_ttl_s(self.limits)
        return sorted(r for r, t in self._seen.items() if now - t <= ttl)

    def sync(
        self, replica: str, report: Mapping[str, Mapping[str, int]], now: float
    ) -> dict[str, Any]:
        """One replica's sync: its figures per tenant in, leases and shares out.

        Args:
            replica: the replica's id.
            report: per tenant it tracks: ``want`` (tokens asked for), ``in_flight``,
                ``blocked`` (refused for concurrency since its last sync) and ``share`` (the
                share it enforces now). A tenant left out releases the replica's share of it.
            now: the current time.

        Returns:
            ``{"replicas": live replica count, "tenants": {name: {"grant": n, "retry_in_s": s,
            "share": n}}}`` (``grant``/``retry_in_s`` for rate-limited tenants, ``share`` for
            concurrency-limited ones).
        """
        self.syncs += 1
        self._seen[replica] = now
        self._drop_dead(now)
        live = self.live(now)
        held = self._held.setdefault(replica, set())
        for name in held - set(report):
            budget = self._budgets.get(name)
            if budget is not None:
                budget.assigned.pop(replica, None)
                budget.demand.pop(replica, None)
        held.intersection_update(report)
        answer: dict[str, dict[str, Any]] = {}
        for name, figures in report.items():
            limits = self.limits.limits_of(name)
            if limits is None:
                continue  # not let in: the replica refuses it before it reports it
            budget = self._budget(name, limits, now)
            out: dict[str, Any] = {}
            if budget.bucket is not None:
                want = max(0, int(figures.get("want", 0)))
                out["grant"] = budget.bucket.grant(now, want) if want else 0
                if out["grant"] < want:
                    out["retry_in_s"] = round(budget.bucket.wait_s(now, 1.0), 6)
            if limits.max_concurrent is not None:
                in_flight = max(0, int(figures.get("in_flight", 0)))
                blocked = max(0, int(figures.get("blocked", 0)))
                enforced = max(0, int(figures.get("share", 0)))
                out["share"] = self._share(
                    budget, limits.max_concurrent, replica, live, in_flight, blocked, enforced
                )
                held.add(name)
            answer[name] = out
        self._evict(now)
        return {"replicas": len(live), "tenants": answer}

    def _share(
        self,
        budget: _Budget,
        total: int,
        replica: str,
        live: list[str],
        in_flight: int,
        blocked: int,
        enforced: int,
    ) -> int:
        budget.demand[replica] = in_flight + blocked
        # Every live replica has a part, in proportion to its demand + 1: one the tenant has
        # not reached yet holds a small part for it, so a client whose requests alternate
        # between replicas is never refused while far under its limit (splitting among the
        # replicas that served the tenant alone gave the first one everything, and the next
        # one nothing until the first had synced twice: polite clients got 429s).
        demand = {r: budget.demand.get(r, 0) for r in {*live, replica}}
        target = split_shares(total, demand)[replica]
        others = sum(n for r, n in budget.assigned.items() if r != replica)
        share = max(0, min(target, total - others))
        # Until the replica applies this answer it still admits up to the share it enforces, and
        # what it runs stays counted until it ends: the larger of the three is held for it, so
        # the others only ever get what no replica can be using (the held shares add up to at
        # most the total; a smaller share is freed one sync later).
        budget.assigned[replica] = max(share, in_flight, enforced)
        return share

    def _budget(self, name: str, limits: TenantLimits, now: float) -> _Budget:
        budget = self._budgets.get(name)
        if budget is None or budget.limits != limits:
            budget = self._budgets[name] = _Budget(limits, now)
        self._budgets.move_to_end(name)
        return budget

    def _drop_dead(self, now: float) -> None:
        ttl = replica_ttl_s(self.limits)
        dead = [r for r, t in self._seen.items() if now - t > ttl]
        for replica in dead:
            del self._seen[replica]
            for name in self._held.pop(replica, set()):
                budget = self._budgets.get(name)
                if budget is not None:
                    budget.assigned.pop(replica, None)
                    budget.demand.pop(replica, None)

    def _evict(self, now: float) -> None:
        """Forget tenants past ``max_tenants``: first one found idle (a full bucket and no
        shares: nothing is lost) among the oldest, else the least recently used."""
        while len(self._budgets) > self.limits.max_tenants:
            victim = next(iter(self._budgets))
            for i, (name, budget) in enumerate(self._budgets.items()):
                if i >= _EVICT_SCAN:
                    break
                if budget.idle(now):
                    victim = name
                    break
            budget = self._budgets.pop(victim)
            for replica in budget.assigned:
                self._held.get(replica, set()).discard(victim)

    def __len__(self) -> int:
        return len(self._budgets)

    def describe(self, now: float) -> dict[str, Any]:
        """The shared figures for ``/graph``: live replicas and, per listed tenant, tokens
        left and the concurrency shares held (unlisted tenants only counted)."""
        tenants: dict[str, Any] = {}
        for name in self.limits.tenants:
            budget = self._budgets.get(name)
            if budget is None:
                continue
            view: dict[str, Any] = {"limits": describe_limits(budget.limits)}
            if budget.bucket is not None:
                budget.bucket.refill(now)
                view["tokens"] = round(budget.bucket.tokens, 3)
            if budget.assigned:
                view["shares"] = dict(budget.assigned)
            tenants[name] = view
        listed = sum(1 for n in self._budgets if n in self.limits.tenants)
        return {
            "replicas": len(self.live(now)),
            "tenants_tracked": len(self._budgets),
            "other_tenants_tracked": len(self._budgets) - listed,
            "tenants": tenants,
        }


def ledger_actor_name(app: str) -> str:
    """Name of an application's ledger actor in the ``servegraph`` namespace (a ``:`` no node
    name holds, so it never meets a router's state actor)."""
    return f"{app}:admission"


class QuotaLedgerActor:
    """The Ray actor holding an application's ledgers, one per ``limits:`` config (the
    replicas of a rolling update keep sharing theirs); a thin wrapper: the ledger decides."""

    def __init__(self, app: str):
        self.app = app
        self._ledgers: OrderedDict[str, QuotaLedger] = OrderedDict()

    async def register(self, config: str, limits: LimitsSpec) -> None:
        """Make sure a ledger for ``limits`` (hash ``config``) exists."""
        if config not in self._ledgers:
            self._ledgers[config] = QuotaLedger(limits, time.time())
            while len(self._ledgers) > MAX_CONFIGS:
                self._ledgers.popitem(last=False)
        self._ledgers.move_to_end(config)

    async def sync(
        self, config: str, replica: str, report: dict[str, dict[str, int]]
    ) -> dict[str, Any]:
        """:meth:`QuotaLedger.sync` on the ledger of ``config``; ``{"unknown_config": true}``
        when there is none (the replica registers, then syncs again)."""
        ledger = self._ledgers.get(config)
        if ledger is None:
            return {"unknown_config": True}
        return ledger.sync(replica, report, time.time())

    async def describe(self, config: str) -> dict[str, Any]:
        """:meth:`QuotaLedger.describe` of the ledger of ``config``."""
        ledger = self._ledgers.get(config)
        return {} if ledger is None else ledger.describe(time.time())


def get_quota_actor(app: str) -> Any:
    """The application's ledger actor, created on first use (named, detached, restarted by Ray
    when it dies)."""
    import ray

    from routing.store import NAMESPACE

    remote = ray.remote(QuotaLedgerActor).options(  # type: ignore[attr-defined]
        name=ledger_actor_name(app),
        namespace=NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        max_restarts=-1,
        num_cpus=0,
    )
    return remote.remote(app)


def ledger_call(actor: Any, limits: LimitsSpec, replica: str) -> Callable[..., Any]:
    """The :data:`~routing.quota_client.LedgerCall` of one replica through the ledger actor:
    registers its config first (and again after the actor restarted and forgot it)."""
    config = limits_hash(limits)
    registered = False

    async def call(report: dict[str, dict[str, int]]) -> dict[str, Any]:
        nonlocal registered
        if not registered:
            await actor.register.remote(config, limits)
            registered = True
        answer = dict(await actor.sync.remote(config, replica, report))
        if answer.get("unknown_config"):
            await actor.register.remote(config, limits)
            answer = dict(await actor.sync.remote(config, replica, report))
        return answer

    return call
