"""A router's arms under failure: per-arm breakers, the fallback, and callers that go away
(routing.arm_guard through routing.router.Router, in-process)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from graphs.replica import HandleRunner
from graphs.spec import RouterNode
from nodes.errors import BreakerOpenError, DeadlineExceededError, NodeError
from routing.router import LocalState, Router
from tests.unit.test_routing_router import Clock, Node


def router(spec: dict[str, Any], nodes: dict[str, Node]) -> Router:
    node = RouterNode.model_validate({"name": "split", "kind": "router", **spec})
    clock = Clock()
    return Router(
        node, HandleRunner(nodes), state=LocalState(node, clock), rng=random.Random(7), clock=clock
    )


def broken(payload: dict[str, Any]) -> Any:
    raise NodeError("bad")


SPEC = {
    "arms": [{"target": "bad", "weight": 1.0}, {"target": "good", "weight": 0.0}],
    "fallback": "good",
}


def test_a_failed_arm_falls_back_and_the_answer_carries_no_decision() -> None:
    nodes = {"bad": Node("bad", broken), "good": Node("good")}
    r = router(SPEC, nodes)
    out, served, notes = asyncio.run(r({"x": 1}, {}))
    assert out == {"arm": "good"} and served == ["good"]
    assert notes["split"] == {"fallback": {"arm": "bad", "reason": "error"}}
    assert "decisions" not in notes  # a reward must not credit the arm that failed
    assert r.guard.state()["fallback"]["served"] == 1
    assert r._stats.arms["bad"].errors == 1  # the arm's failure still counts against it


def test_an_open_breaker_sheds_the_arm_straight_to_the_fallback() -> None:
    nodes = {"bad": Node("bad", broken), "good": Node("good")}
    spec = {**SPEC, "breaker": {"min_calls": 3, "failure_ratio": 0.5, "open_s": 60}}
    r = router(spec, nodes)

    async def go() -> list[Any]:
        return [await r({"x": i}, {}) for i in range(10)]

    results = asyncio.run(go())
    assert nodes["bad"].calls == 3  # then shed: never called while open
    assert all(out == {"arm": "good"} for out, _, _ in results)
    reasons = [notes["split"]["fallback"]["reason"] for _, _, notes in results]
    assert reasons == ["error"] * 3 + ["breaker_open"] * 7
    assert r.guard.state()["breakers"]["bad"]["state"] == "open"


def test_without_a_fallback_an_open_breaker_answers_503() -> None:
    nodes = {"bad": Node("bad", broken), "good": Node("good")}
    spec = {"arms": SPEC["arms"], "breaker": {"min_calls": 1, "open_s": 60}}
    r = router(spec, nodes)
    with pytest.raises(NodeError):
        asyncio.run(r({"x": 1}, {}))
    with pytest.raises(BreakerOpenError) as err:
        asyncio.run(r({"x": 1}, {}))
    assert err.value.status_code == 503 and err.value.node == "bad"


def test_no_fallback_once_the_deadline_has_passed() -> None:
    nodes = {"bad": Node("bad", broken), "good": Node("good")}
    r = router(SPEC, nodes)
    with pytest.raises(DeadlineExceededError, match="'bad'"):
        asyncio.run(r({"x": 1}, {"deadline": 1.0}))
    assert nodes["bad"].calls == 0 and nodes["good"].calls == 0


def test_a_caller_that_goes_away_is_not_an_arm_error() -> None:
    async def slow(payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(60)
        return {}

    nodes = {"a": Node("a", slow)}
    spec = {"arms": [{"target": "a"}], "breaker": {"min_calls": 1, "open_s": 60}}
    r = router(spec, nodes)

    async def go() -> None:
        task = asyncio.ensure_future(r({"x": 1}, {}))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert r._stats.arms["a"].requests == 0 and r._stats.arms["a"].errors == 0
    assert r.guard.breakers[0] is not None and r.guard.breakers[0].state == "closed"


def test_no_fallback_when_the_arm_failed_because_the_deadline_passed() -> None:
    from nodes.errors import DeadlineExceededError

    def late(payload: dict[str, Any]) -> Any:
        raise DeadlineExceededError("bad")  # the request's deadline, as a callee reports it

    nodes = {"bad": Node("bad", late), "good": Node("good")}
    r = router(SPEC, nodes)
    with pytest.raises(DeadlineExceededError, match="'bad'"):
        asyncio.run(r({"x": 1}, {}))
    assert nodes["good"].calls == 0
    # A node's own timeout (timeout_s given) leaves the request time: the fallback serves.
    nodes["bad"].fn = lambda p: (_ for _ in ()).throw(DeadlineExceededError("bad", 0.5))
    out, _, notes = asyncio.run(r({"x": 1}, {}))
    assert out == {"arm": "good"} and notes["split"]["fallback"]["reason"] == "error"


class DyingState(LocalState):
    """A state holder that dies during the first ``deaths`` reward calls (as a Ray actor
    restarting would); ``landed`` says whether the dying call applied the reward first."""

    def __init__(self, spec: Any, clock: Any, deaths: int, landed: bool):
        super().__init__(spec, clock)
        self.deaths, self.landed, self.calls = deaths, landed, 0

    async def feedback(self, claims: Any, decisions: Any, reward: float) -> Any:
        from ray.exceptions import ActorDiedError

        self.calls += 1
        if self.calls <= self.deaths:
            if self.landed:
                await super().feedback(claims, decisions, reward)
            raise ActorDiedError()
        return await super().feedback(claims, decisions, reward)


def _claims() -> dict[str, Any]:
    return {"token_id": "t1", "request_id": "r1", "issued_at": 999.0, "expires_at": 2000.0}


@pytest.mark.parametrize("landed", [False, True])
def test_a_reward_cut_off_by_a_state_holder_restart_is_sent_again(landed: bool) -> None:
    node = RouterNode.model_validate(
        {"name": "split", "kind": "router", "arms": [{"target": "a"}], "bandit": {}}
    )
    clock = Clock()
    state = DyingState(node, clock, deaths=1, landed=landed)
    r = Router(node, HandleRunner({"a": Node("a")}), state=state, clock=clock)
    result = asyncio.run(r.feedback(_claims(), [[0]], 1.0))
    assert result == {"router": "split", "arms": ["a"]} and state.calls == 2
    assert state.state.stats.arms["a"].reward.count == 1  # applied once either way


def test_a_reward_the_state_holder_never_takes_is_a_503(monkeypatch: pytest.MonkeyPatch) -> None:
    from routing import replica_sync
    from routing.errors import StateUnavailableError

    monkeypatch.setattr(replica_sync, "FEEDBACK_RETRY_S", 0.3)
    node = RouterNode.model_validate(
        {"name": "split", "kind": "router", "arms": [{"target": "a"}], "bandit": {}}
    )
    clock = Clock()
    state = DyingState(node, clock, deaths=100, landed=False)
    r = Router(node, HandleRunner({"a": Node("a")}), state=state, clock=clock)
    with pytest.raises(StateUnavailableError) as err:
        asyncio.run(r.feedback(_claims(), [[0]], 1.0))
    assert err.value.status_code == 503 and err.value.retry_after_s == 1
