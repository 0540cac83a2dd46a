"""One ingress replica's side of the shared per-tenant budget: :class:`ReplicaQuotas`.

Requests are admitted or refused from what the replica holds, without a remote call:

- tokens leased from the :class:`~routing.quota_ledger.QuotaLedger` in chunks of ``lease_s`` of
  the tenant's rate, topped up by the background sync (every ``sync_interval_s``, one call for
  all tenants) once fewer than half a chunk are left;
- the concurrency share the ledger handed this replica.

A tenant the replica has not synced yet gets one request on credit (one token, one request in
progress) so its first request never waits for the ledger; the debt is paid from its first
lease. If the ledger cannot be reached, the replica falls back to a local budget of each limit
divided by the last known replica count, says so once in the log, and keeps serving; it goes
back to the shared budget at the first sync that succeeds. Tenants idle for ``idle_s`` are
forgotten (their unused tokens lapse: the budget refills anyway), and at most ``max_tenants``
are tracked.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from nodes.errors import OverloadedError
from routing.limits import LimitsSpec, TenantLimits
from routing.quotas import RateLimitedError, TokenBucket, describe_limits, retry_after

__all__ = ["FIRST_SYNC_TIMEOUT_S", "LedgerCall", "ReplicaQuotas", "Ticket", "chunk_size"]

log = logging.getLogger("servegraph")

#: Seconds the first sync may take (it may start the ledger actor) before the replica falls back.
FIRST_SYNC_TIMEOUT_S = 30.0
#: One sync with the ledger: the replica's report in, the ledger's answer out.
LedgerCall = Callable[[dict[str, dict[str, int]]], Awaitable[dict[str, Any]]]


def chunk_size(limits: TenantLimits, lease_s: float) -> int:
    """Tokens a replica leases at a time: ``lease_s`` of the rate, at least 1, at most the
    burst."""
    rate = limits.requests_per_s or 0.0
    return max(1, min(int(limits.bucket_size), math.ceil(rate * lease_s)))


class Ticket:
    """One tenant as this replica tracks it; what :meth:`ReplicaQuotas.admit` returns and
    :meth:`ReplicaQuotas.release` takes back."""

    __slots__ = (
        "activity",
        "answered_at",
        "blocked",
        "fallback",
        "in_flight",
        "last_active",
        "limits",
        "name",
        "retry_in_s",
        "share",
        "synced",
        "tokens",
    )

    def __init__(self, name: str, limits: TenantLimits, now: float):
        self.name = name
        self.limits = limits
        self.tokens = 0.0  # leased and unused (negative: one taken on credit)
        self.synced = False  # the ledger answered for it at least once
        self.retry_in_s = 0.0  # the ledger's wait for its next token, at answered_at
        self.answered_at = now
        self.share: int | None = None  # concurrency share from the ledger
        self.in_flight = 0
        self.blocked = 0  # refused for concurrency since the last sync
        self.activity = 0  # requests seen since the last sync
        self.last_active = now
        self.fallback: TokenBucket | None = None  # the local bucket while the ledger is away


class ReplicaQuotas:
    """This replica's admission by tenant (pure apart from :meth:`run`: the clock is injected).

    Args:
        limits: the graph's ``limits:`` section.
        clock: monotonic seconds.
        replicas: replica count to divide limits by before the ledger has said (fallback).
    """

    def __init__(
        self, limits: LimitsSpec, clock: Callable[[], float] = time.monotonic, replicas: int = 1
    ):
        self.limits = limits
        self.clock = clock
        self.replicas = max(1, replicas)
        self.mode = "starting"  # then "shared" or "fallback"
        self.idle_s = max(1.0, 10 * limits.sync_interval_s)
        self.timeout_s = max(1.0, 5 * limits.sync_interval_s)
        self._tenants: OrderedDict[str, Ticket] = OrderedDict()
        self._first_sync: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._round: asyncio.Event | None = None  # set when the sync in progress ends
        self.failures = 0

    # --- the request path -----------------------------------------------------------------

    def admit(self, tenant: str, limits: TenantLimits) -> Ticket:
        """Count a request of ``tenant`` in, or refuse it.

        Raises:
            RateLimitedError: over its concurrency share or out of tokens (429).
            OverloadedError: ``max_tenants`` tenants all have requests in progress (503).
        """
        now = self.clock()
        ticket = self._ticket(tenant, limits, now)
        ticket.activity += 1
        ticket.last_active = now
        if limits.max_concurrent is not None and ticket.in_flight >= self._share(ticket):
            ticket.blocked += 1
            raise RateLimitedError(self._named(tenant), describe_limits(limits), "concurrency", 1)
        if limits.requests_per_s is not None:
            self._take_token(ticket, now)
        ticket.in_flight += 1
        return ticket

    async def admit_or_wait(self, tenant: str, limits: TenantLimits) -> Ticket:
        """:meth:`admit`, except that a tenant whose first lease is still on its way (its one
        request on credit used) waits for the next sync, at most :attr:`timeout_s`, instead of
        being refused: a tenant under its limit is never refused for the replica's bookkeeping.
        """
        try:
            return self.admit(tenant, limits)
        except RateLimitedError as exc:
            ticket = self._tenants.get(tenant)
            if exc.reason != "rate" or ticket is None or ticket.synced or self.mode != "shared":
                raise
        if self._round is None:
            self._round = asyncio.Event()
        try:
            await asyncio.wait_for(asyncio.shield(self._round.wait()), self.timeout_s)
        except TimeoutError:
            pass  # the sync's own timeout falls back to local limits meanwhile
        return self.admit(tenant, limits)

    def release(self, ticket: Ticket) -> None:
        """A request admitted by :meth:`admit` finished (however it ended)."""
        ticket.in_flight = max(0, ticket.in_flight - 1)

    def refund(self, ticket: Ticket) -> None:
        """Give back the token of a request admitted but then refused before any work."""
        if ticket.limits.requests_per_s is None:
            return
        if ticket.fallback is not None:
            ticket.fallback.give_back(self.clock(), 1.0)
        else:
            ticket.tokens += 1

    def _named(self, tenant: str) -> str | None:
        return tenant if tenant in self.limits.tenants else None

    def _ticket(self, tenant: str, limits: TenantLimits, now: float) -> Ticket:
        ticket = self._tenants.get(tenant)
        if ticket is not None and ticket.limits == limits:
            self._tenants.move_to_end(tenant)
            return ticket
        if ticket is None and len(self._tenants) >= self.limits.max_tenants:
            self._evict_one()
        ticket = self._tenants[tenant] = Ticket(tenant, limits, now)
        return ticket

    def _evict_one(self) -> None:
        victim = next((n for n, t in self._tenants.items() if t.in_flight == 0), None)
        if victim is None:
            raise OverloadedError(
                f"{len(self._tenants)} tenants have requests in progress on this replica "
                f"(limits.max_tenants); retry after {self.limits.retry_after_s} s",
                retry_after_s=self.limits.retry_after_s,
            )
        del self._tenants[victim]

    def _share(self, ticket: Ticket) -> int:
        total = ticket.limits.max_concurrent or 0
        if self.mode != "shared":
            return max(1, total // self.replicas)
        return 1 if ticket.share is None else ticket.share  # one on credit until it is known

    def _take_token(self, ticket: Ticket, now: float) -> None:
        limits = ticket.limits
        rate = limits.requests_per_s or 1.0
        if self.mode != "shared":
            if ticket.fallback is None:
                ticket.fallback = TokenBucket(
                    rate / self.replicas, max(1.0, limits.bucket_size / self.replicas), now
                )
            if not ticket.fallback.take(now):
                wait = ticket.fallback.wait_s(now)
                raise RateLimitedError(
                    self._named(ticket.name), describe_limits(limits), "rate", retry_after(wait)
                )
            return
        if ticket.tokens >= 1 or (not ticket.synced and ticket.tokens > -1):
            ticket.tokens -= 1
            return
        wait = max(ticket.retry_in_s - (now - ticket.answered_at), 1.0 / rate)
        raise RateLimitedError(
            self._named(ticket.name), describe_limits(limits), "rate", retry_after(wait)
        )

    # --- the sync -----------------------------------------------------------------------

    def report(self) -> dict[str, dict[str, int]]:
        """What the next sync sends, per tenant tracked (and forget the idle ones): tokens
        wanted, requests in progress, requests refused for concurrency. Resets the counters."""
        now = self.clock()
        out: dict[str, dict[str, int]] = {}
        for name in list(self._tenants):
            ticket = self._tenants[name]
            if (
                not ticket.activity
                and not ticket.in_flight
                and now - ticket.last_active > self.idle_s
            ):
                del self._tenants[name]
                continue
            figures: dict[str, int] = {}
            limits = ticket.limits
            if limits.requests_per_s is not None:
                chunk = chunk_size(limits, self.limits.lease_s)
                if ticket.activity and ticket.tokens < chunk / 2:
                    figures["want"] = math.ceil(chunk - ticket.tokens)
                elif ticket.tokens < 0:
                    figures["want"] = math.ceil(-ticket.tokens)  # pay the credit back
            if limits.max_concurrent is not None:
                figures["in_flight"] = ticket.in_flight
                figures["blocked"] = ticket.blocked
                figures["share"] = self._share(ticket)
            ticket.activity = ticket.blocked = 0
            out[name] = figures
        return out

    def apply(self, answer: dict[str, Any]) -> None:
        """Take a sync's answer: leases, shares and the live replica count."""
        now = self.clock()
        if self.mode == "fallback":
            log.warning("admission: the shared tenant budget is reachable again")
        if self.mode != "shared":
            for held in self._tenants.values():
                held.fallback = None
                held.tokens = max(held.tokens, 0.0)
        self.mode = "shared"
        self.failures = 0
        self.replicas = max(1, int(answer.get("replicas", self.replicas)))
        for name, out in answer.get("tenants", {}).items():
            ticket = self._tenants.get(name)
            if ticket is None:
                continue  # forgotten meanwhile; its lease lapses
            if "grant" in out:
                ticket.tokens += int(out["grant"])
                ticket.synced = True
                ticket.retry_in_s = float(out.get("retry_in_s", 0.0))
                ticket.answered_at = now
            if "share" in out:
                ticket.share = int(out["share"])

    def fail(self, error: BaseException) -> None:
        """The ledger could not be reached: enforce each limit ÷ the last known replica count
        locally (said once in the log, until the ledger answers again)."""
        self.failures += 1
        if self.mode != "fallback":
            log.warning(
                "admission: the shared tenant budget is unreachable (%s: %s); this replica "
                "now allows each tenant 1/%d of its limits until it is back",
                type(error).__name__,
                error,
                self.replicas,
            )
        self.mode = "fallback"

    async def sync_once(self, call: LedgerCall, timeout_s: float | None = None) -> None:
        """One sync: send :meth:`report`, then :meth:`apply` the answer (or :meth:`fail` when
        none comes within ``timeout_s``, default :attr:`timeout_s`)."""
        report = self.report()
        try:
            answer = await asyncio.wait_for(call(report), timeout_s or self.timeout_s)
        except Exception as exc:  # unreachable, timed out, restarting: fall back
            self.fail(exc)
        else:
            self.apply(answer)
        if self._round is not None:  # wake the requests waiting for this round
            self._round.set()
            self._round = None

    async def run(self, call: LedgerCall) -> None:
        """Sync every ``sync_interval_s``, forever (the replica's background task)."""
        # The first sync may start the ledger actor (a new worker process: seconds on a busy
        # node); that is no outage, so it gets longer before the replica says it falls back.
        timeout_s: float | None = FIRST_SYNC_TIMEOUT_S
        while True:
            await self.sync_once(call, timeout_s)
            timeout_s = None
            if self._first_sync is not None:
                self._first_sync.set()
            await asyncio.sleep(self.limits.sync_interval_s)

    async def started(self, call: Callable[[], LedgerCall]) -> None:
        """Start the background sync on first use and wait up to :attr:`timeout_s` for its
        first round, so a new replica starts from the shared budget; until that round ends it
        allows each tenant its limits ÷ the replica count. ``call`` builds the ledger call."""
        if self._first_sync is None:
            self._first_sync = asyncio.Event()
            try:
                link = call()
            except Exception as exc:
                self.fail(exc)
                self._first_sync.set()
                return
            loop = asyncio.get_running_loop()  # a fresh context: not the first request's
            self._task = loop.create_task(self.run(link), context=contextvars.Context())
        if not self._first_sync.is_set():
            try:
                await asyncio.wait_for(asyncio.shield(self._first_sync.wait()), self.timeout_s)
            except TimeoutError:
                pass  # still starting: limits ÷ replica count meanwhile

    def describe(self) -> dict[str, Any]:
        """This replica's figures for ``/graph``: mode, replica count and, per listed tenant,
        its tokens, share and requests in progress (unlisted tenants only counted)."""
        tenants = {}
        for name in self.limits.tenants:
            ticket = self._tenants.get(name)
            if ticket is not None:
                tenants[name] = {
                    "tokens": round(ticket.tokens, 3),
                    "share": self._share(ticket) if ticket.limits.max_concurrent else None,
                    "in_flight": ticket.in_flight,
                }
        return {
            "mode": self.mode,
            "replicas": self.replicas,
            "tenants_tracked": len(self._tenants),
            "tenants": tenants,
        }
