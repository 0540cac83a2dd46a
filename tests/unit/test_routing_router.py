"""The router deployment's logic in-process: policies applied per request, batched sync with the
shared state, shadow calls off the primary's path, feedback and control (no Ray: node handles
are in-process stand-ins, the state holder is :class:`routing.router.LocalState`)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from graphs.replica import HandleRunner
from graphs.spec import RouterNode
from nodes.errors import RequestValidationError
from routing.canary import CanaryStateError
from routing.router import LocalState, Router
from routing.state import UnknownActionError
from routing.tokens import ReplayedTokenError


class Node:
    """An in-process stand-in for a node's handle: ``remote`` returns an awaitable result."""

    def __init__(self, name: str, fn: Callable[[dict[str, Any]], Any] | None = None):
        self.name = name
        self.fn = fn or (lambda p: {"arm": name})
        self.calls = 0

    def remote(self, payload: dict[str, Any], ctx: dict[str, Any]) -> Any:
        return self._call(payload)

    async def _call(self, payload: dict[str, Any]) -> Any:
        self.calls += 1
        out = self.fn(payload)
        if asyncio.iscoroutine(out):
            out = await out
        return out, [self.name], {}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def router(spec: dict[str, Any], nodes: dict[str, Node], clock: Clock | None = None) -> Router:
    node = RouterNode.model_validate({"name": "split", "kind": "router", **spec})
    clock = clock or Clock()
    return Router(
        node, HandleRunner(nodes), state=LocalState(node, clock), rng=random.Random(7), clock=clock
    )


def two_arms(**extra: Any) -> dict[str, Any]:
    return {"arms": [{"target": "a"}, {"target": "b"}], **extra}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def serve_many(r: Router, n: int, ctx: Callable[[int], dict[str, Any]]) -> list[str]:
    arms = []
    for i in range(n):
        out, _, _ = await r({"x": i}, ctx(i))
        arms.append(out["arm"])
    return arms


def test_weighted_split_is_70_30_within_3_points_over_5000_requests() -> None:
    nodes = {"a": Node("a"), "b": Node("b")}
    spec = {"arms": [{"target": "a", "weight": 0.7}, {"target": "b", "weight": 0.3}]}

    async def go() -> list[str]:
        return await serve_many(router(spec, nodes), 5000, lambda i: {})

    share = Counter(run(go()))["a"] / 5000
    assert abs(share - 0.7) <= 0.03  # binomial sd 0.0065: 3 points is > 4.5 sd


def test_sticky_ab_keeps_users_on_their_arm_and_a_weight_change_moves_few() -> None:
    nodes = {"a": Node("a"), "b": Node("b")}
    spec = {
        "arms": [{"target": "a", "weight": 0.7}, {"target": "b", "weight": 0.3}],
        "ab": {"key": {"header": "X-User-Id"}},
    }

    async def go() -> tuple[list[str], list[str], list[str]]:
        r = router(spec, nodes)

        def user(i: int) -> dict[str, Any]:
            return {"headers": {"x-user-id": f"user-{i % 5000}"}}

        first = await serve_many(r, 5000, user)
        again = await serve_many(r, 5000, user)
        await r.control("weights", {"weights": [0.6, 0.4]})
        moved = await serve_many(r, 5000, user)
        return first, again, moved

    first, again, after = run(go())
    assert first == again  # 100 % sticky
    assert abs(Counter(first)["a"] / 5000 - 0.7) <= 0.03
    changed = sum(x != y for x, y in zip(first, after)) / 5000
    assert changed <= 0.10 + 0.02  # ideal 10 %; 2 points of sampling tolerance
    assert all(y == "b" for x, y in zip(first, after) if x != y)  # only towards the grown arm


def test_decisions_travel_in_notes_and_reach_the_bandit_through_feedback() -> None:
    nodes = {"a": Node("a"), "b": Node("b")}

    async def go() -> Counter[str]:
        r = router(two_arms(bandit={}), nodes)
        assert r.spec.bandit is not None and r.spec.bandit.algorithm == "thompson_beta"
        rng = random.Random(1)
        served: list[str] = []
        for i in range(600):
            out, _, notes = await r({"x": i}, {})
            [decision] = notes["decisions"]
            assert decision[0] == "split"
            p = 0.9 if out["arm"] == "b" else 0.5
            reward = 1.0 if rng.random() < p else 0.0
            claims = {"token_id": f"t{i}", "expires_at": 1e12}
            await r.feedback(claims, [decision[1:]], reward)
            await r.sync_now()
            served.append(out["arm"])
        return Counter(served[-200:])

    last = run(go())
    assert last["b"] >= 0.9 * 200


def test_linucb_decision_carries_its_context() -> None:
    nodes = {"a": Node("a"), "b": Node("b")}
    spec = two_arms(bandit={"algorithm": "linucb", "features": ["x"]})

    async def go() -> list[Any]:
        _, _, notes = await router(spec, nodes)({"x": 3}, {})
        return list(notes["decisions"][0])

    router_name, arm, context = run(go())
    assert (router_name, context) == ("split", [1.0, 3.0]) and arm in (0, 1)


def test_feedback_rejects_replays_and_bad_rewards_without_changing_anything() -> None:
    nodes = {"a": Node("a"), "b": Node("b")}

    async def go() -> None:
        r = router(two_arms(bandit={}), nodes)
        claims = {"token_id": "t1", "expires_at": 1e12}
        with pytest.raises(RequestValidationError, match="reward"):
            await r.feedback(claims, [[0]], 2.0)  # thompson_beta takes [0, 1]
        await r.feedback(claims, [[0]], 1.0)
        with pytest.raises(ReplayedTokenError):
            await r.feedback(claims, [[1]], 1.0)
        summary = await r._state.summary()
        assert summary["bandit"]["counts"] == [1.0, 0.0]

    run(go())


FAST_CANARY = {
    "steps": [20, 50, 100],
    "min_step_seconds": 1,
    "min_candidate_requests": 30,
    "min_stable_requests": 30,
}


def test_canary_rolls_back_a_candidate_failing_30_percent() -> None:
    fail = random.Random(3)

    def flaky(payload: dict[str, Any]) -> dict[str, Any]:
        if fail.random() < 0.3:
            raise RuntimeError("candidate broke")
        return {"arm": "b"}

    nodes = {"a": Node("a"), "b": Node("b", flaky)}
    clock = Clock()
    spec = two_arms(canary=FAST_CANARY)

    async def go() -> dict[str, Any]:
        r = router(spec, nodes, clock)
        for i in range(2000):
            try:
                await r({"x": i}, {})
            except RuntimeError:
                pass
            clock.t += 0.01
            if i % 50 == 0:
                await r.sync_now()
        await r.sync_now()
        return await r._state.summary()

    state = run(go())
    canary = state["canary"]
    assert canary["status"] == "rolled_back"
    assert state["weights"] == [1.0, 0.0]
    last = canary["history"][-1]
    assert last["action"] == "rollback" and "error" in last["reason"]


def test_canary_promotes_a_healthy_candidate_and_obeys_operator_actions() -> None:
    nodes = {"a": Node("a"), "b": Node("b")}
    clock = Clock()
    spec = two_arms(canary=FAST_CANARY)

    async def go() -> None:
        r = router(spec, nodes, clock)
        await r.control("pause", {})
        with pytest.raises(CanaryStateError):
            await r.control("pause", {})
        await r.control("resume", {"reason": "checked dashboards"})
        with pytest.raises(CanaryStateError, match="policy 'canary'"):
            await r.control("weights", {"weights": [0.5, 0.5]})
        with pytest.raises(UnknownActionError):
            await r.control("explode", {})
        for i in range(3000):
            await r({"x": i}, {})
            clock.t += 0.01
            if i % 50 == 0:
                await r.sync_now()
        await r.sync_now()
        state = await r._state.summary()
        assert state["canary"]["status"] == "promoted"
        actions = [e["action"] for e in state["canary"]["history"]]
        assert actions == ["start", "pause", "resume", "advance", "advance", "promote"]
        assert r.split.weights == [0.0, 1.0]
        await r.control("rollback", {})
        assert r.split.weights == [1.0, 0.0]

    run(go())


def test_weights_control_validates_and_user_config_applies_once() -> None:
    nodes = {"a": Node("a"), "b": Node("b")}

    async def go() -> None:
        r = router(two_arms(), nodes)
        with pytest.raises(RequestValidationError, match="weights"):
            await r.control("weights", {"weights": [1.0]})
        await r.reconfigure({"weights": [1, 3]})
        assert r.split.weights == [0.25, 0.75]
        await r.control("weights", {"weights": [1, 1]})
        await r.reconfigure({"weights": [1, 3]})  # a restarted replica: same user_config
        assert r.split.weights == [0.5, 0.5]
        with pytest.raises(ValueError, match="weights' only"):
            await r.reconfigure({"weight": [1, 3]})

    run(go())


def test_shadow_errors_hangs_and_overflow_never_reach_the_client() -> None:
    async def hang(payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {}

    def boom(payload: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("shadow broke")

    async def go() -> dict[str, Any]:
        results = {}
        for name, fn in (("hang", hang), ("boom", boom)):
            nodes = {"a": Node("a"), "s": Node("s", fn)}
            spec = {
                "arms": [{"target": "a"}],
                "shadow": {"target": "s", "max_in_flight": 4, "timeout_s": 0.2},
            }
            r = router(spec, nodes)
            for i in range(10):
                out, _, _ = await r({"x": i}, {})
                assert out == {"arm": "a"}
                await asyncio.sleep(0.001)  # let finished shadow calls free their slots
            await asyncio.sleep(0.4 if name == "hang" else 0.05)
            await r.sync_now()
            results[name] = (await r._state.summary())["shadow"]
        return results

    shadow = run(go())
    hang_, boom_ = shadow["hang"], shadow["boom"]
    # 4 slots: 4 hung until their timeout, the other 6 were dropped at once.
    assert (hang_["mirrored"], hang_["dropped"], hang_["timeouts"]) == (10, 6, 4)
    assert boom_["shadow_errors"] == 10 and boom_["dropped"] == 0


def test_shadow_compares_outputs() -> None:
    nodes = {
        "a": Node("a", lambda p: {"label": p["x"] % 3, "score": 1.0}),
        "s": Node("s", lambda p: {"label": p["x"] % 2, "score": 1.5}),
    }

    async def go() -> dict[str, Any]:
        r = router({"arms": [{"target": "a"}], "shadow": {"target": "s"}}, nodes)
        for i in range(12):
            await r({"x": i}, {})
        await asyncio.sleep(0.05)
        await r.sync_now()
        return dict((await r._state.summary())["shadow"])

    shadow = run(go())
    assert shadow["compared"] == 12
    # labels agree for x in {0, 1, 6, 7} (mod 6: 0 and 1): 4 of 12 pairs
    assert shadow["fields"]["label"]["agreement_rate"] == pytest.approx(4 / 12)
    assert shadow["fields"]["score"]["mean_abs_diff"] == pytest.approx(0.5)


def test_a_failing_arm_counts_as_an_error_and_raises() -> None:
    def broken(payload: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("down")

    nodes = {"a": Node("a", broken)}

    async def go() -> dict[str, Any]:
        r = router({"arms": [{"target": "a"}]}, nodes)
        with pytest.raises(RuntimeError):
            await r({"x": 1}, {})
        return await r.experiments()

    report = run(go())
    assert report["arms"]["a"]["requests"] == 1
    assert report["arms"]["a"]["errors"] == 1


def test_control_endpoints_need_the_bearer_token_only_when_one_is_set() -> None:
    from graphs.security import check_control_auth
    from nodes.errors import UnauthorizedError

    check_control_auth(None, None)  # no token configured: open
    check_control_auth("Bearer s3cret", "s3cret")
    for header in (None, "", "Bearer wrong", "s3cret", "Basic s3cret"):
        with pytest.raises(UnauthorizedError) as info:
            check_control_auth(header, "s3cret")
        assert info.value.status_code == 401


def test_concurrent_syncs_send_each_figure_once() -> None:
    nodes = {"a": Node("a"), "b": Node("b")}

    async def go() -> int:
        r = router(two_arms(), nodes)
        for i in range(10):
            await r({"x": i}, {})
        await asyncio.gather(*(r.sync_now() for _ in range(5)))
        report = await r.experiments()
        return sum(arm["requests"] for arm in report["arms"].values())

    assert run(go()) == 10


def test_experiments_answer_503_while_the_state_holder_is_gone() -> None:
    from ray.exceptions import ActorDiedError

    from routing.errors import StateUnavailableError

    r = router(two_arms(), {"a": Node("a"), "b": Node("b")})

    class Gone:
        async def sync(self, *args: Any) -> dict[str, Any]:
            raise ActorDiedError()

        async def report(self) -> dict[str, Any]:
            raise ActorDiedError()

    async def gone() -> Gone:
        return Gone()

    r._get_state = gone  # type: ignore[method-assign]
    with pytest.raises(StateUnavailableError) as info:
        run(r.experiments())
    assert "state holder is unreachable" in str(info.value)
