"""The per-tenant budget the ingress replicas share, without Ray: the ledger's leases and
concurrency shares, one replica's side of them, the fallback and the memory bounds."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from typing import Any

import pytest

from nodes.errors import OverloadedError
from routing.limits import LimitsSpec, TenantLimits
from routing.quota_client import ReplicaQuotas, Ticket, chunk_size
from routing.quota_ledger import (
    QuotaLedger,
    QuotaLedgerActor,
    ledger_call,
    limits_hash,
    split_shares,
)
from routing.quotas import RateLimitedError


class Clock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def spec(**kwargs: Any) -> LimitsSpec:
    return LimitsSpec.model_validate({"tenant": {"header": "X-Tenant"}, **kwargs})


RATE = TenantLimits(requests_per_s=10, burst=10)
CONC = TenantLimits(max_concurrent=4)


def link(ledger: QuotaLedger, replica: str, clock: Clock) -> Any:
    async def call(report: dict[str, dict[str, int]]) -> dict[str, Any]:
        return ledger.sync(replica, report, clock())

    return call


def sync(quotas: ReplicaQuotas, call: Any) -> None:
    asyncio.run(quotas.sync_once(call))


def admitted(quotas: ReplicaQuotas, tenant: str, limits: TenantLimits, n: int) -> int:
    ok = 0
    for _ in range(n):
        try:
            quotas.release(quotas.admit(tenant, limits))
            ok += 1
        except RateLimitedError:
            pass
    return ok


# --- the ledger --------------------------------------------------------------------------------


def test_split_shares_adds_up_and_follows_demand() -> None:
    assert split_shares(10, {}) == {}
    assert split_shares(10, {"a": 0, "b": 0}) == {"a": 5, "b": 5}
    assert split_shares(3, {"a": 0, "b": 0}) == {"a": 2, "b": 1}
    parts = split_shares(10, {"a": 8, "b": 0})
    assert parts == {"a": 9, "b": 1} and sum(parts.values()) == 10
    for total in range(1, 30):
        assert sum(split_shares(total, {"a": 3, "b": 1, "c": 7}).values()) == total


def test_ledger_leases_tokens_from_one_bucket_and_says_when_the_next_is_due() -> None:
    ledger = QuotaLedger(spec(default=RATE.model_dump()), 0.0)
    first = ledger.sync("r1", {"t": {"want": 6}}, 0.0)
    assert first == {"replicas": 1, "tenants": {"t": {"grant": 6}}}
    second = ledger.sync("r2", {"t": {"want": 6}}, 0.0)
    assert second["replicas"] == 2
    assert second["tenants"]["t"]["grant"] == 4  # what was left of the burst of 10
    assert second["tenants"]["t"]["retry_in_s"] == pytest.approx(0.1)
    assert ledger.sync("r1", {"t": {"want": 6}}, 0.5)["tenants"]["t"]["grant"] == 5


def test_ledger_concurrency_shares_never_add_up_past_the_limit() -> None:
    ledger = QuotaLedger(spec(default=CONC.model_dump()), 0.0)
    assert ledger.sync("a", {"t": {"in_flight": 1, "blocked": 0}}, 0.0)["tenants"]["t"] == {
        "share": 4
    }
    # b arrives: a holds all 4, so b gets nothing until a gives some back.
    assert ledger.sync("b", {"t": {"in_flight": 1, "blocked": 3}}, 0.05)["tenants"]["t"] == {
        "share": 0
    }
    share_a = ledger.sync("a", {"t": {"in_flight": 1, "blocked": 0}}, 0.1)["tenants"]["t"]["share"]
    share_b = ledger.sync("b", {"t": {"in_flight": 1, "blocked": 3}}, 0.15)["tenants"]["t"]["share"]
    assert share_a + share_b <= 4 and share_b >= 2


def test_ledger_keeps_counting_what_a_replica_still_runs() -> None:
    ledger = QuotaLedger(spec(default=CONC.model_dump()), 0.0)
    ledger.sync("a", {"t": {"in_flight": 4, "blocked": 0}}, 0.0)
    # a's target halves when b asks, but its 4 requests still run: b gets none of them yet.
    assert (
        ledger.sync("b", {"t": {"in_flight": 0, "blocked": 5}}, 0.0)["tenants"]["t"]["share"] == 0
    )
    ledger.sync("a", {"t": {"in_flight": 4, "blocked": 0}}, 0.1)
    assert (
        ledger.sync("b", {"t": {"in_flight": 0, "blocked": 5}}, 0.1)["tenants"]["t"]["share"] == 0
    )
    ledger.sync("a", {"t": {"in_flight": 0, "blocked": 0}}, 0.2)
    assert ledger.sync("b", {"t": {"in_flight": 0, "blocked": 5}}, 0.2)["tenants"]["t"]["share"] > 0


def test_a_smaller_share_is_freed_only_once_the_replica_enforces_it() -> None:
    ledger = QuotaLedger(spec(default=CONC.model_dump()), 0.0)
    ledger.sync("a", {"t": {"in_flight": 0, "blocked": 0, "share": 1}}, 0.0)  # gets 4
    ledger.sync("b", {"t": {"in_flight": 0, "blocked": 9, "share": 1}}, 0.0)
    # a is told a smaller share, but enforces 4 until it hears it: b gets nothing yet.
    small = ledger.sync("a", {"t": {"in_flight": 0, "blocked": 0, "share": 4}}, 0.1)
    assert small["tenants"]["t"]["share"] < 4
    assert ledger.sync("b", {"t": {"in_flight": 0, "blocked": 9, "share": 0}}, 0.1)["tenants"][
        "t"
    ] == {"share": 0}
    enforced = small["tenants"]["t"]["share"]
    ledger.sync("a", {"t": {"in_flight": 0, "blocked": 0, "share": enforced}}, 0.2)
    freed = ledger.sync("b", {"t": {"in_flight": 0, "blocked": 9, "share": 0}}, 0.2)
    assert freed["tenants"]["t"]["share"] == 4 - enforced


def test_replicas_never_run_more_than_the_limit_plus_their_credit() -> None:
    rng = random.Random(7)
    clock = Clock(0.0)
    total, n = 6, 3
    limits = spec(default={"max_concurrent": total})
    tenant = limits.default
    ledger = QuotaLedger(limits, clock())
    replicas = [ReplicaQuotas(limits, clock) for _ in range(n)]
    calls = [link(ledger, f"r{i}", clock) for i in range(n)]
    for q, c in zip(replicas, calls):
        sync(q, c)  # what started() waits for before the first request
    running: list[list[Ticket]] = [[] for _ in range(n)]
    peak = 0
    for step in range(3000):
        i = rng.randrange(n)
        if rng.random() < 0.6:
            try:
                running[i].append(replicas[i].admit("t", tenant))
            except RateLimitedError:
                pass
        elif running[i]:
            replicas[i].release(running[i].pop(rng.randrange(len(running[i]))))
        clock.t += 0.01
        if step % 4 == 0:  # each replica syncs every 0.12 s; requests come in meanwhile
            j = (step // 4) % n
            report = replicas[j].report()
            answer = ledger.sync(f"r{j}", report, clock())
            if rng.random() < 0.5:
                k = rng.randrange(n)
                try:
                    running[k].append(replicas[k].admit("t", tenant))
                except RateLimitedError:
                    pass
            replicas[j].apply(answer)
        in_flight = sum(len(r) for r in running)
        assert in_flight <= total + n, (step, in_flight)
        if step > 500:  # every replica has heard its share by now: no credit left
            assert in_flight <= total, (step, in_flight)
        peak = max(peak, in_flight)
    assert peak >= total - 1  # and the limit is used, not wasted


def test_a_replica_that_stops_syncing_is_dropped_with_its_shares() -> None:
    limits = spec(default=CONC.model_dump())
    ledger = QuotaLedger(limits, 0.0)
    ledger.sync("a", {"t": {"in_flight": 4, "blocked": 0}}, 0.0)
    assert (
        ledger.sync("b", {"t": {"in_flight": 0, "blocked": 1}}, 1.0)["tenants"]["t"]["share"] == 0
    )
    answer = ledger.sync("b", {"t": {"in_flight": 0, "blocked": 1}}, 2.5)  # a: silent > 2 s
    assert answer == {"replicas": 1, "tenants": {"t": {"share": 4}}}


def test_a_tenant_left_out_of_a_report_releases_the_replicas_share() -> None:
    ledger = QuotaLedger(spec(default=CONC.model_dump()), 0.0)
    ledger.sync("a", {"t": {"in_flight": 2, "blocked": 0}}, 0.0)
    ledger.sync("a", {}, 0.1)
    # a holds nothing of t any more: b gets all but the small part kept for a (live, demand 0).
    assert (
        ledger.sync("b", {"t": {"in_flight": 0, "blocked": 1}}, 0.1)["tenants"]["t"]["share"] == 3
    )


def test_every_live_replica_has_a_part_before_the_tenant_reaches_it() -> None:
    # A client alternating between two replicas, one request at a time, is never refused.
    ledger = QuotaLedger(spec(default=CONC.model_dump()), 0.0)
    ledger.sync("b", {}, 0.0)  # b is live but has not served t
    assert (
        ledger.sync("a", {"t": {"in_flight": 1, "blocked": 0}}, 0.0)["tenants"]["t"]["share"] == 3
    )
    assert (
        ledger.sync("b", {"t": {"in_flight": 0, "blocked": 0}}, 0.05)["tenants"]["t"]["share"] == 1
    )


def test_ledger_memory_is_bounded_and_idle_tenants_go_first() -> None:
    ledger = QuotaLedger(spec(default=RATE.model_dump(), max_tenants=16), 0.0)
    ledger.sync("a", {"busy": {"want": 10}}, 0.0)  # its bucket is empty: not idle
    for i in range(1000):
        ledger.sync("a", {f"t{i}": {}}, 0.0)
    assert len(ledger) == 16
    assert ledger.describe(0.0)["tenants_tracked"] == 16
    # busy was the oldest, but forgetting it would refill its bucket: idle ones went first.
    assert ledger.sync("a", {"busy": {"want": 1}}, 0.0)["tenants"]["busy"]["grant"] == 0


# --- one replica ---------------------------------------------------------------------------


def test_a_new_tenant_gets_one_request_on_credit_then_leases() -> None:
    clock = Clock()
    limits = spec(default=RATE.model_dump())
    ledger = QuotaLedger(limits, clock())
    quotas = ReplicaQuotas(limits, clock)
    call = link(ledger, "r1", clock)
    sync(quotas, call)  # registers: shared mode
    assert quotas.mode == "shared"
    assert admitted(quotas, "t", RATE, 3) == 1  # on credit; the rest wait for the lease
    sync(quotas, call)
    chunk = chunk_size(RATE, limits.lease_s)
    assert chunk == 3  # 0.25 s of 10/s, rounded up
    assert admitted(quotas, "t", RATE, 10) == chunk  # the debt was paid from the lease
    with pytest.raises(RateLimitedError) as info:
        quotas.admit("t", RATE)
    assert info.value.retry_after_s == 1 and info.value.reason == "rate"


def test_a_new_tenant_past_its_credit_waits_for_the_first_lease_instead_of_a_429() -> None:
    clock = Clock()
    limits = spec(default=RATE.model_dump())
    ledger = QuotaLedger(limits, clock())
    quotas = ReplicaQuotas(limits, clock)
    call = link(ledger, "r1", clock)
    sync(quotas, call)  # shared mode

    async def burst() -> list[Ticket]:
        first = await quotas.admit_or_wait("t", RATE)  # on credit
        second = asyncio.ensure_future(quotas.admit_or_wait("t", RATE))
        await asyncio.sleep(0)
        assert not second.done()  # waits for the lease rather than a 429...
        await quotas.sync_once(call)
        return [first, await second]  # ...and is admitted from it

    assert len(asyncio.run(burst())) == 2
    # A tenant out of leased tokens (not a first lease) is still refused at once.
    while True:
        try:
            quotas.admit("t", RATE)
        except RateLimitedError:
            break
    with pytest.raises(RateLimitedError):
        asyncio.run(quotas.admit_or_wait("t", RATE))


def test_refill_tops_up_before_the_replica_runs_dry() -> None:
    clock = Clock()
    limits = spec(default={"requests_per_s": 100, "burst": 100})
    tenant = limits.default
    ledger = QuotaLedger(limits, clock())
    quotas = ReplicaQuotas(limits, clock)
    call = link(ledger, "r1", clock)
    sync(quotas, call)
    quotas.release(quotas.admit("t", tenant))
    sync(quotas, call)
    chunk = chunk_size(tenant, limits.lease_s)  # 25
    for _ in range(chunk // 2 + 2):  # below half a chunk
        quotas.release(quotas.admit("t", tenant))
    report = quotas.report()
    assert report["t"]["want"] > 0
    quotas.apply(ledger.sync("r1", report, clock()))
    assert quotas._tenants["t"].tokens >= chunk - 1


def test_retry_after_is_the_ledgers_wait_rounded_up() -> None:
    clock = Clock()
    limits = spec(default={"requests_per_s": 0.25, "burst": 1})
    tenant = limits.default
    ledger = QuotaLedger(limits, clock())
    quotas = ReplicaQuotas(limits, clock)
    call = link(ledger, "r1", clock)
    sync(quotas, call)
    quotas.release(quotas.admit("t", tenant))  # credit; the ledger's one token pays it
    sync(quotas, call)
    clock.t += 0.1
    with pytest.raises(RateLimitedError):
        quotas.admit("t", tenant)
    sync(quotas, call)  # asks; the bucket is empty for 4 s
    clock.t += 0.5
    with pytest.raises(RateLimitedError) as info:
        quotas.admit("t", tenant)
    assert info.value.retry_after_s == 4  # ceil(4 - 0.1 - 0.5)


def test_concurrency_is_released_on_every_ending() -> None:
    clock = Clock()
    limits = spec(default={"max_concurrent": 2})
    tenant = limits.default
    ledger = QuotaLedger(limits, clock())
    quotas = ReplicaQuotas(limits, clock)
    call = link(ledger, "r1", clock)
    sync(quotas, call)
    first = quotas.admit("t", tenant)  # on credit: one at a time until the ledger says
    with pytest.raises(RateLimitedError) as info:
        quotas.admit("t", tenant)
    assert info.value.reason == "concurrency"
    sync(quotas, call)
    second = quotas.admit("t", tenant)
    with pytest.raises(RateLimitedError):
        quotas.admit("t", tenant)
    quotas.release(first)
    quotas.release(second)
    quotas.release(second)  # twice: never below zero
    assert quotas._tenants["t"].in_flight == 0
    quotas.release(quotas.admit("t", tenant))


def test_the_replicas_together_stay_within_the_rate_plus_one_lease_each() -> None:
    clock = Clock(0.0)
    rate, burst, seconds, n = 50.0, 20, 10.0, 4
    limits = spec(default={"requests_per_s": rate, "burst": burst})
    tenant = limits.default
    ledger = QuotaLedger(limits, clock())
    replicas = [ReplicaQuotas(limits, clock) for _ in range(n)]
    calls = [link(ledger, f"r{i}", clock) for i in range(n)]
    for q, c in zip(replicas, calls):
        sync(q, c)
    total, step = 0, 0.01
    while clock.t < seconds:
        for q in replicas:  # every replica floods: 5 requests per 10 ms
            total += admitted(q, "flood", tenant, 5)
        clock.t += step
        if round(clock.t / step) % 10 == 0:  # each syncs every 0.1 s
            for q, c in zip(replicas, calls):
                sync(q, c)
    bound = burst + rate * seconds + n * (chunk_size(tenant, limits.lease_s) + 1)
    assert 0.9 * rate * seconds <= total <= bound, (total, bound)


def test_fallback_divides_the_limits_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limits = spec(default={"requests_per_s": 8, "burst": 8, "max_concurrent": 8})
    tenant = limits.default
    ledger = QuotaLedger(limits, clock())
    quotas = ReplicaQuotas(limits, clock)
    for other in ("r2", "r3", "r4"):
        ledger.sync(other, {}, clock())
    sync(quotas, link(ledger, "r1", clock))
    assert quotas.replicas == 4

    async def down(report: dict[str, dict[str, int]]) -> dict[str, Any]:
        raise ConnectionError("actor died")

    with caplog.at_level(logging.WARNING, logger="servegraph"):
        for _ in range(3):
            sync(quotas, down)
    assert quotas.mode == "fallback"
    assert sum("unreachable" in r.getMessage() for r in caplog.records) == 1
    held = [quotas.admit("t", tenant), quotas.admit("t", tenant)]  # 8 / 4 = 2 at once
    with pytest.raises(RateLimitedError):
        quotas.admit("t", tenant)
    for t in held:
        quotas.release(t)
    assert admitted(quotas, "t", tenant, 10) == 0  # its bucket: 2 of 8, both spent
    clock.t += 0.5  # 1 token at 8/4 per second
    assert admitted(quotas, "t", tenant, 10) == 1
    sync(quotas, link(ledger, "r1", clock))
    assert quotas.mode == "shared"


def test_a_slow_ledger_counts_as_unreachable() -> None:
    limits = spec(default=RATE.model_dump(), sync_interval_s=0.01)
    quotas = ReplicaQuotas(limits, Clock())
    quotas.timeout_s = 0.05

    async def hangs(report: dict[str, dict[str, int]]) -> dict[str, Any]:
        await asyncio.sleep(10)
        return {}

    sync(quotas, hangs)
    assert quotas.mode == "fallback"


def test_started_waits_for_the_first_sync_and_survives_a_missing_ledger() -> None:
    clock = Clock()
    limits = spec(default=RATE.model_dump())
    ledger = QuotaLedger(limits, clock())

    async def go() -> tuple[str, str]:
        shared = ReplicaQuotas(limits, clock)
        await shared.started(lambda: link(ledger, "r1", clock))
        orphan = ReplicaQuotas(limits, clock)

        def no_ray() -> Any:
            raise RuntimeError("no Ray here")

        await orphan.started(no_ray)
        modes = shared.mode, orphan.mode
        assert shared._task is not None
        shared._task.cancel()
        return modes

    assert asyncio.run(go()) == ("shared", "fallback")


def test_replica_memory_is_bounded_and_busy_tenants_are_kept() -> None:
    clock = Clock()
    limits = spec(default={"max_concurrent": 2}, max_tenants=16)
    tenant = limits.default
    quotas = ReplicaQuotas(limits, clock)
    for i in range(1000):
        quotas.release(quotas.admit(f"t{i}", tenant))
    assert len(quotas._tenants) == 16
    busy: list[Ticket] = [quotas.admit(f"busy{i}", tenant) for i in range(16)]
    with pytest.raises(OverloadedError):
        quotas.admit("one-more", tenant)
    quotas.release(busy[0])
    quotas.release(quotas.admit("one-more", tenant))


def test_idle_tenants_are_forgotten_and_leave_the_report() -> None:
    clock = Clock()
    limits = spec(default=RATE.model_dump())
    quotas = ReplicaQuotas(limits, clock)
    quotas.release(quotas.admit("t", RATE))
    assert "t" in quotas.report()
    clock.t += 0.5
    assert quotas.report() == {"t": {}}  # quiet, not idle yet: keeps its lease
    clock.t += quotas.idle_s
    assert quotas.report() == {} and not quotas._tenants


# --- the actor wrapper ---------------------------------------------------------------------


class _Method:
    def __init__(self, fn: Any):
        self.fn = fn

    def remote(self, *args: Any) -> Any:
        return self.fn(*args)


class FakeActor:
    """An in-process stand-in for the actor handle: ``.method.remote(...)`` is awaitable."""

    def __init__(self) -> None:
        self.actor = QuotaLedgerActor("app")
        self.register = _Method(self.actor.register)
        self.sync = _Method(self.actor.sync)


def test_ledger_call_registers_and_registers_again_after_a_restart() -> None:
    limits = spec(default=RATE.model_dump())
    fake = FakeActor()
    call = ledger_call(fake, limits, "r1")

    async def go() -> list[dict[str, Any]]:
        first = await call({"t": {"want": 2}})
        fake.actor._ledgers.clear()  # the actor restarted and forgot
        second = await call({"t": {"want": 2}})
        return [first, second]

    first, second = asyncio.run(go())
    assert first["tenants"]["t"]["grant"] == 2 and second["tenants"]["t"]["grant"] == 2
    assert list(fake.actor._ledgers) == [limits_hash(limits)]
    assert asyncio.run(fake.actor.sync("nope", "r1", {})) == {"unknown_config": True}


def test_the_actor_keeps_a_ledger_per_config() -> None:
    actor = QuotaLedgerActor("app")
    old, new = spec(default=RATE.model_dump()), spec(default={"requests_per_s": 1})
    for limits in (old, new):
        asyncio.run(actor.register(limits_hash(limits), limits))
    assert asyncio.run(actor.sync(limits_hash(old), "r", {"t": {"want": 5}}))["tenants"]["t"] == {
        "grant": 5
    }
    described = asyncio.run(actor.describe(limits_hash(new)))
    assert described["replicas"] == 0 and math.isclose(len(actor._ledgers), 2)
