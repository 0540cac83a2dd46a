"""Blue/green routers: an atomic switch across replicas, rollback, config changes, stale views
(no Ray: several Router replicas share one in-process state holder and a fake clock)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from graphs.replica import HandleRunner
from graphs.spec import RouterNode
from nodes.errors import RequestValidationError
from routing.canary import CanaryStateError
from routing.errors import StateUnavailableError
from routing.holder import LocalState
from routing.keys import config_hash
from routing.router import Router
from routing.state import RouterState

LEASE = 60.0
SKEW = 0.5


def node(active: str = "blue", **extra: Any) -> RouterNode:
    return RouterNode.model_validate(
        {
            "name": "bg",
            "kind": "router",
            "arms": [{"target": "a", "name": "blue"}, {"target": "b", "name": "green"}],
            "blue_green": {"active": active, "lease_s": LEASE, "clock_skew_s": SKEW},
            # Long: the replicas' own background sync never fires in a test; they sync by hand.
            "state": {"sync_interval_s": 30},
            **extra,
        }
    )


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        """Wait until the test has moved the clock ``seconds`` on."""
        until = self.t + seconds
        while self.t < until:
            await asyncio.sleep(0)


class Arm:
    def __init__(self, name: str):
        self.name = name

    def remote(self, payload: Any, ctx: Any) -> Any:
        async def call() -> Any:
            return {"arm": self.name}, [self.name], {}

        return call()


class Partitioned:
    """A replica's way to the shared holder, cut while ``down``."""

    def __init__(self, inner: LocalState):
        self.inner = inner
        self.down = False

    async def sync(self, *args: Any) -> dict[str, Any]:
        if self.down:
            raise ConnectionError("partitioned")
        return await self.inner.sync(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def replicas(holder: Any, clock: Clock, n: int, spec: RouterNode | None = None) -> list[Router]:
    runner = HandleRunner({"a": Arm("blue"), "b": Arm("green")})
    return [
        Router(
            spec or node(),
            runner,
            state=holder if not isinstance(holder, list) else holder[i],
            rng=random.Random(i),
            clock=clock,
            wall_clock=clock,
            replica_id=f"r{i}",
        )
        for i in range(n)
    ]


async def serve(r: Router) -> str:
    out, _, _ = await r({"x": 1}, {})
    return str(out["arm"])


def test_every_replica_switches_at_the_same_instant_and_none_serves_blue_after_the_ack() -> None:
    clock = Clock()
    holder = LocalState(node(), clock, sleep=clock.sleep)
    links = [Partitioned(holder) for _ in range(4)]
    routers = replicas(links, clock, 4)

    async def go() -> None:
        for r in routers:
            assert await serve(r) == "blue"  # first call: synced, fresh view
        links[3].down = True  # r3 will not hear of the switch
        clock.t += 1
        control = asyncio.ensure_future(routers[0].control("switch", {"to": "green"}))
        await asyncio.sleep(0)
        switch = holder.state.blue_green.switch  # type: ignore[union-attr]
        assert switch is not None and switch["at"] == clock.t + LEASE
        served: list[tuple[float, int, str]] = []
        step = 0
        while not control.done():
            clock.t += 0.25
            step += 1
            for i, r in enumerate(routers):
                if i < 3 and step % (4 * (i + 2)) == 0:  # every 2, 3, 4 s: well within the lease
                    await r.sync_now()
                try:
                    served.append((clock.t, i, await serve(r)))
                except StateUnavailableError:
                    served.append((clock.t, i, "refused"))
            await asyncio.sleep(0)
        result = control.result()
        at = switch["at"]
        # No replica flipped early, every replica that heard of it flipped exactly at T...
        assert all(arm == "blue" for t, i, arm in served if t < at and i < 3)
        assert all(arm == "green" for t, i, arm in served if t >= at and i < 3)
        # ... and the one cut off stopped serving blue once it could not know: before T.
        assert all(arm != "blue" for t, i, arm in served if t >= at and i == 3)
        assert any(arm == "refused" for _, i, arm in served if i == 3)
        assert result["acknowledged_at"] >= at + SKEW
        assert result["confirmed"] == ["r0", "r1", "r2"] and result["unconfirmed"] == ["r3"]
        assert result["switch"]["to"] == "green" and result["switch"]["from"] == "blue"
        # After the acknowledgement nobody chooses blue; r3 syncs as soon as it can.
        links[3].down = False
        for _ in range(20):
            clock.t += 0.1
            assert {await serve(r) for r in routers} == {"green"}
        summary = await holder.summary()
        bg = summary["blue_green"]
        assert bg["active"] == "green" and bg["switch"] is None
        assert [e["action"] for e in bg["history"]] == ["scheduled", "switched"]
        assert summary["weights"] == [0.0, 1.0]

    asyncio.run(go())


def test_a_replica_with_a_stale_view_syncs_before_it_serves() -> None:
    clock = Clock()
    holder = LocalState(node(), clock, sleep=clock.sleep)
    [r] = replicas(holder, clock, 1)

    async def go() -> None:
        assert await serve(r) == "blue"
        # The switch happens while this replica is idle (no request, no sync).
        holder.state.control("switch", {"to": "green", "at": clock.t + LEASE}, clock.t)
        clock.t += LEASE + 1
        assert r.split.weights == [1.0, 0.0]  # its view is still blue...
        assert await serve(r) == "green"  # ...but stale: it synced first

    asyncio.run(go())


def test_switch_and_rollback_validate_and_refuse_what_does_not_fit() -> None:
    clock = Clock()
    holder = LocalState(node(), clock, sleep=clock.sleep)
    [r] = replicas(holder, clock, 1)

    async def advance(task: asyncio.Future[Any]) -> Any:
        while not task.done():
            clock.t += 1
            await r.sync_now()
            await asyncio.sleep(0)
        return task.result()

    async def go() -> None:
        await serve(r)
        with pytest.raises(RequestValidationError, match="to: must name one of the arms"):
            await r.control("switch", {"to": "purple"})
        with pytest.raises(RequestValidationError, match="at: is set by the router"):
            await r.control("switch", {"to": "green", "at": clock.t})
        with pytest.raises(CanaryStateError, match="already active"):
            await r.control("switch", {"to": "blue"})
        with pytest.raises(CanaryStateError, match="no switch to roll back"):
            await r.control("rollback", {})
        with pytest.raises(CanaryStateError, match="policy 'blue_green'"):
            await r.control("weights", {"weights": [0.5, 0.5]})
        first = asyncio.ensure_future(r.control("switch", {"to": "green"}))
        await asyncio.sleep(0)
        with pytest.raises(CanaryStateError, match="pending"):
            await r.control("rollback", {})
        await advance(first)
        assert await serve(r) == "green"
        back = await advance(asyncio.ensure_future(r.control("rollback", {"reason": "5xx"})))
        assert back["switch"]["to"] == "blue" and back["switch"]["reason"] == "5xx"
        assert await serve(r) == "blue"
        await r.control("reset", {})  # a reset is no switch
        assert await serve(r) == "blue" and holder.state.blue_green is not None
        assert len(holder.state.blue_green.history) == 4

    asyncio.run(go())


def test_changing_active_in_the_config_switches_through_the_schedule_and_keeps_the_state() -> None:
    clock = Clock()
    holder = LocalState(node(), clock, sleep=clock.sleep)
    old = replicas(holder, clock, 2)
    assert config_hash(node("green")) == config_hash(node("blue"))

    async def go() -> None:
        for r in old:
            await serve(r)
        await holder.configure(node("green"))  # a redeploy: the first new replica's spec
        new = replicas(holder, clock, 1, node("green"))[0]
        new.replica_id = "new"
        # The new replica follows the schedule too: blue until the instant, like the old ones.
        assert await serve(new) == "blue"
        switch = holder.state.blue_green.switch  # type: ignore[union-attr]
        assert switch is not None and "config" in switch["reason"]
        await holder.configure(node("green"))  # more new replicas: no second switch
        assert holder.state.blue_green.switches == 1  # type: ignore[union-attr]
        while clock.t < switch["at"]:
            clock.t += 5
            for r in [*old, new]:
                await r.sync_now()
        assert {await serve(r) for r in [*old, new]} == {"green"}
        summary = await holder.summary()
        assert summary["requests"]["blue"] == 3  # figures kept across the config change
        assert summary["blue_green"]["configured"] == "green"

    asyncio.run(go())


def test_a_config_change_during_a_pending_switch_is_scheduled_after_it() -> None:
    state = RouterState(node(), 0.0)
    state.control("switch", {"to": "green", "at": 60.0}, 0.0)
    assert state.configure_active("green", 90.0, 10.0) is None  # owed: a switch is pending
    assert state.blue_green is not None and state.blue_green.owed == "green"
    # After the pending switch green is active already: nothing more to do.
    assert state.configure_active("green", 130.0, 70.0) is None
    assert state.blue_green.active == 1 and state.blue_green.owed is None
    state.configure_active("blue", 200.0, 140.0)
    assert state.blue_green.switch is not None and state.blue_green.switch["to"] == 0
    again = RouterState.from_dict(node(), state.to_dict())
    assert again.to_dict() == state.to_dict()


def test_blue_green_spec_errors_name_the_field() -> None:
    base = {"name": "bg", "kind": "router"}
    two = [{"target": "a", "name": "blue"}, {"target": "b", "name": "green"}]
    cases = [
        ({"arms": [*two, {"target": "c"}], "blue_green": {"active": "blue"}}, "exactly 2 arms"),
        ({"arms": two, "blue_green": {"active": "red"}}, "active must name one of the arms"),
        (
            {
                "arms": [{**two[0], "weight": 0.5}, {**two[1], "weight": 0.5}],
                "blue_green": {"active": "blue"},
            },
            "take no weight",
        ),
        ({"arms": two, "blue_green": {"active": "blue", "lease_s": 0.8}}, "clock_skew_s"),
        ({"arms": two, "blue_green": {"active": "blue"}, "canary": {}}, "at most one of"),
    ]
    for extra, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            RouterNode.model_validate({**base, **extra})
        if "must name" in message or "2 arms" in message:
            assert info.value.errors()[0]["loc"] == ("blue_green",)  # type: ignore[attr-defined]
