"""Ensembles under failure: quorum, member breakers, the fallback, cancellation (in-process)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from graphs.replica import HandleRunner
from graphs.spec import EnsembleNode
from nodes.ensemble import Ensemble
from nodes.errors import NodeError, QuorumError
from tests.unit.test_routing_router import Node


def ensemble(nodes: dict[str, Node], **spec: Any) -> Ensemble:
    node = EnsembleNode.model_validate(
        {"name": "both", "kind": "ensemble", "members": ["a", "b"], **spec}
    )
    return Ensemble(node, HandleRunner(nodes))


def value(v: float) -> Any:
    return lambda payload: {"y": [v]}


def broken(payload: dict[str, Any]) -> Any:
    raise NodeError("bad")


def test_a_missed_quorum_is_served_by_the_fallback() -> None:
    nodes = {"a": Node("a", value(1.0)), "b": Node("b", broken), "c": Node("c", value(9.0))}
    e = ensemble(nodes, fallback="c")
    out, served, notes = asyncio.run(e({"x": 1}, {}))
    assert out == {"y": [9.0]} and served == ["c"]
    assert "1 of 2 members answered" in notes["both"]["fallback"]
    assert e.breaker_states()["fallback"]["served"] == 1


def test_without_a_fallback_a_missed_quorum_is_a_504_naming_the_ensemble() -> None:
    nodes = {"a": Node("a", value(1.0)), "b": Node("b", broken)}
    with pytest.raises(QuorumError) as err:
        asyncio.run(ensemble(nodes)({"x": 1}, {}))
    assert err.value.node == "both" and err.value.status_code == 504


def test_an_open_member_breaker_leaves_the_member_out_uncalled() -> None:
    nodes = {"a": Node("a", value(1.0)), "b": Node("b", broken)}
    e = ensemble(nodes, quorum=1, breaker={"min_calls": 2, "open_s": 60})

    async def go() -> list[Any]:
        return [await e({"x": i}, {}) for i in range(5)]

    results = asyncio.run(go())
    assert nodes["b"].calls == 2 and nodes["a"].calls == 5
    assert results[-1][2]["both"]["shed"] == ["b"]
    assert e.breaker_states()["breakers"]["b"]["state"] == "open"


def test_members_are_cancelled_when_the_caller_goes_away() -> None:
    cancelled = []

    async def slow(payload: dict[str, Any]) -> dict[str, Any]:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return {"y": [0.0]}

    nodes = {"a": Node("a", slow), "b": Node("b", slow)}
    e = ensemble(nodes)

    async def go() -> None:
        task = asyncio.ensure_future(e({"x": 1}, {}))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.01)

    asyncio.run(go())
    assert cancelled == [True, True]


def test_member_notes_merge_without_losing_either_routers_decision() -> None:
    class Routed(Node):
        async def _call(self, payload: dict[str, Any]) -> Any:
            self.calls += 1
            return {"y": [1.0]}, [self.name], {"decisions": [[f"r-{self.name}", 0]]}

    nodes = {"a": Routed("a"), "b": Routed("b")}
    _, _, notes = asyncio.run(ensemble(nodes)({"x": 1}, {}))
    assert sorted(notes["decisions"]) == [["r-a", 0], ["r-b", 0]]
