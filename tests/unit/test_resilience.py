"""Deadlines, retries and breakers of calls between nodes (nodes.resilience, nodes.breaker)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError

from nodes.breaker import CircuitBreaker
from nodes.call_spec import BreakerSpec, RetrySpec
from nodes.errors import (
    BreakerOpenError,
    DeadlineExceededError,
    NodeError,
    RequestValidationError,
)
from nodes.resilience import (
    BUDGET,
    DEADLINE,
    STREAM_GAP,
    CallGuard,
    CallSettings,
    RetryBudget,
    classify,
    counts_as_failure,
)


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


async def no_sleep(_: float) -> None:
    return None


def guard(settings: dict[str, CallSettings] | None = None, clock: Clock | None = None) -> Any:
    clock = clock or Clock()
    return CallGuard(settings, clock=clock, monotonic=clock, rng=random.Random(0), sleep=no_sleep)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- breaker -------------------------------------------------------------------------------------


def test_breaker_opens_at_the_failure_ratio_and_half_opens_after_open_s() -> None:
    clock = Clock()
    changes: list[str] = []
    spec = BreakerSpec(failure_ratio=0.5, window_s=10, min_calls=4, open_s=5, probes=2)
    breaker = CircuitBreaker(spec, clock, changes.append)
    for ok in (True, False, True):
        assert breaker.allow()
        breaker.record(ok)
    assert breaker.state == "closed"  # 1 of 3: under min_calls
    assert breaker.allow()
    breaker.record(False)  # 2 of 4 = 0.5
    assert breaker.state == "open"
    assert not breaker.allow() and breaker.shed == 1
    assert breaker.retry_after_s() == 5
    clock.now += 5
    assert breaker.allow() and breaker.state == "half_open"
    assert breaker.allow()  # second probe
    assert not breaker.allow()  # only two probes
    breaker.record(True)
    breaker.record(True)
    assert breaker.state == "closed"
    assert changes == ["open", "half_open", "closed"]


def test_breaker_reopens_on_a_failed_probe_and_a_cancelled_probe_is_given_back() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerSpec(min_calls=1, open_s=1, probes=1), clock)
    breaker.allow()
    breaker.record(False)
    assert breaker.state == "open"
    clock.now += 1
    assert breaker.allow()
    breaker.release()  # the probe's caller went away: no outcome
    assert breaker.allow()  # another probe may go
    breaker.record(False)
    assert breaker.state == "open" and breaker.opened == 2


def test_breaker_forgets_failures_outside_its_window() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerSpec(min_calls=2, window_s=10, failure_ratio=1.0), clock)
    breaker.allow()
    breaker.record(False)
    clock.now += 11
    breaker.allow()
    breaker.record(False)
    assert breaker.state == "closed"  # the first failure left the window
    assert breaker.to_dict()["failures_in_window"] == 1


# --- classification ------------------------------------------------------------------------------


def test_failures_are_classified_by_what_they_say_about_the_callee() -> None:
    assert classify(ActorDiedError()) == "replica_died"
    assert classify(ActorUnavailableError("gone", b"0" * 16)) == "unavailable"
    assert classify(RuntimeError("model bug")) is None
    assert classify(NodeError("m")) is None  # answered on purpose: never retried
    assert counts_as_failure(RuntimeError())
    assert counts_as_failure(DeadlineExceededError("m"))
    assert not counts_as_failure(RequestValidationError("inputs.x", "bad"))
    assert not counts_as_failure(asyncio.CancelledError())


# --- the guard -----------------------------------------------------------------------------------


def ctx(deadline: float | None = None, budget: int = 2) -> dict[str, Any]:
    out: dict[str, Any] = {"request_id": "r", BUDGET: RetryBudget(budget)}
    if deadline is not None:
        out[DEADLINE] = deadline
    return out


def test_a_call_past_its_deadline_is_never_made() -> None:
    calls = []

    async def make(c: dict[str, Any]) -> str:
        calls.append(c)
        return "ok"

    with pytest.raises(DeadlineExceededError, match="'m'") as err:
        run(guard().call("m", make, ctx(deadline=999.0)))  # the clock says 1000
    assert calls == [] and err.value.status_code == 504


def test_the_callee_gets_an_earlier_deadline_than_its_caller_waits_for() -> None:
    seen = []

    async def make(c: dict[str, Any]) -> str:
        seen.append(c[DEADLINE])
        return "ok"

    assert run(guard().call("m", make, ctx(deadline=1010.0))) == "ok"
    assert 1009.85 < seen[0] < 1010.0


def test_a_hung_call_is_cancelled_at_the_deadline_and_named() -> None:
    cancelled = []

    async def main() -> None:
        async def hang(c: dict[str, Any]) -> str:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise
            return "never"

        loop = asyncio.get_running_loop()
        g = CallGuard(clock=loop.time)
        with pytest.raises(DeadlineExceededError, match="'slow'"):
            await g.call("slow", hang, ctx(deadline=loop.time() + 0.05))

    run(main())
    assert cancelled == [True]


def test_a_deeper_nodes_deadline_error_passes_through_unchanged() -> None:
    async def make(c: dict[str, Any]) -> str:
        raise DeadlineExceededError("deep")

    with pytest.raises(DeadlineExceededError, match="'deep'"):
        run(guard().call("top", make, ctx(deadline=1010.0)))


def test_replica_death_is_retried_once_by_default_and_spends_the_budget() -> None:
    attempts = []

    async def make(c: dict[str, Any]) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ActorDiedError()
        return "ok"

    g = guard()
    c = ctx(deadline=1010.0, budget=2)
    assert run(g.call("m", make, c)) == "ok"
    assert len(attempts) == 2 and c[BUDGET].left == 1
    assert g.retried == {("m", "replica_died"): 1}


def test_retries_stop_at_attempts_and_at_an_empty_budget() -> None:
    async def dies(c: dict[str, Any]) -> str:
        raise ActorDiedError()

    settings = {"m": CallSettings(retries=RetrySpec(attempts=5))}
    g = guard(settings)
    c = ctx(deadline=1010.0, budget=2)
    with pytest.raises(ActorDiedError):
        run(g.call("m", dies, c))
    assert g.retried == {("m", "replica_died"): 2} and c[BUDGET].left == 0
    c = ctx(deadline=1010.0, budget=5)
    g = guard(settings)
    with pytest.raises(ActorDiedError):
        run(g.call("m", dies, c))
    assert g.retried == {("m", "replica_died"): 4}  # 5 attempts in all


def test_model_errors_are_never_retried_nor_are_timeouts_by_default() -> None:
    attempts = []

    async def fails(c: dict[str, Any]) -> str:
        attempts.append(1)
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        run(guard().call("m", fails, ctx(deadline=1010.0)))
    assert len(attempts) == 1


def test_a_nodes_own_timeout_is_retried_when_it_says_so() -> None:
    attempts = []

    async def main() -> str:
        loop = asyncio.get_running_loop()

        async def slow_once(c: dict[str, Any]) -> str:
            attempts.append(1)
            if len(attempts) == 1:
                await asyncio.sleep(60)
            return "ok"

        settings = {
            "m": CallSettings(timeout_s=0.05, retries=RetrySpec(on=["timeout"], backoff_ms=0))
        }
        g = CallGuard(settings, clock=loop.time)
        return await g.call("m", slow_once, ctx(deadline=loop.time() + 10))

    assert run(main()) == "ok" and len(attempts) == 2


def test_an_open_breaker_sheds_calls_with_503() -> None:
    clock = Clock()
    settings = {"m": CallSettings(breaker=BreakerSpec(min_calls=2, failure_ratio=1.0))}
    g = guard(settings, clock)

    async def fails(c: dict[str, Any]) -> str:
        raise RuntimeError("bug")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            run(g.call("m", fails, ctx(deadline=1010.0)))
    with pytest.raises(BreakerOpenError) as err:
        run(g.call("m", fails, ctx(deadline=1010.0)))
    assert err.value.status_code == 503 and err.value.retry_after_s == 5
    assert g.state()["breakers"]["m"]["state"] == "open"


def test_invalid_requests_do_not_open_a_breaker() -> None:
    settings = {"m": CallSettings(breaker=BreakerSpec(min_calls=1, failure_ratio=1.0))}
    g = guard(settings)

    async def refuses(c: dict[str, Any]) -> str:
        raise RequestValidationError("inputs.x", "bad")

    for _ in range(3):
        with pytest.raises(RequestValidationError):
            run(g.call("m", refuses, ctx(deadline=1010.0)))
    assert g.breakers["m"].state == "closed"


async def _items(n: int, delay: float = 0.0, first_delay: float = 0.0) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(first_delay if i == 0 else delay)
        yield i


def test_a_stream_must_start_by_the_deadline_and_keep_within_the_gap() -> None:
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        g = CallGuard(clock=loop.time)
        got: list[Any] = []
        c = {**ctx(deadline=loop.time() + 1), STREAM_GAP: 0.05}
        async for item in g.stream("llm", lambda _: _items(3, delay=0.01), c):
            got.append(item)
        c = {**ctx(deadline=loop.time() + 1), STREAM_GAP: 0.05}
        try:
            async for item in g.stream("llm", lambda _: _items(3, delay=0.2), c):
                got.append(item)
        except DeadlineExceededError as exc:
            got.append(str(exc))
        c = {**ctx(deadline=loop.time() + 0.05), STREAM_GAP: 5.0}
        try:
            async for item in g.stream("llm", lambda _: _items(3, first_delay=0.5), c):
                got.append(item)
        except DeadlineExceededError as exc:
            got.append(str(exc))
        return got

    got = run(main())
    assert got[:4] == [0, 1, 2, 0]
    assert "'llm' did not answer within 0.05s" in got[4]
    assert "'llm'" in got[5] and len(got) == 6


def test_a_stream_is_retried_only_before_its_first_item() -> None:
    opened = []

    async def dies_first(c: dict[str, Any]) -> AsyncIterator[int]:
        opened.append(1)
        if len(opened) == 1:
            raise ActorDiedError()
        yield 1
        raise ActorDiedError()

    async def main() -> list[int]:
        got = []
        try:
            async for item in guard().stream("llm", dies_first, ctx(deadline=1010.0)):
                got.append(item)
        except ActorDiedError:
            got.append(-1)
        return got

    assert run(main()) == [1, -1] and len(opened) == 2


def test_call_settings_of_a_node() -> None:
    from graphs.spec import EnsembleNode, ModelNode
    from routing.spec import RouterNode

    breaker = {"min_calls": 5, "probes": 2}
    model = ModelNode(
        name="m", kind="model", runtime="python", model_class="x:Y", timeout_s=2, breaker=breaker
    )
    assert CallSettings.of(model) == CallSettings(2.0, RetrySpec(), BreakerSpec(**breaker))
    router = RouterNode(name="r", kind="router", arms=[{"target": "m"}], breaker=breaker)
    assert CallSettings.of(router).breaker is None  # a router's breakers guard its arms
    ensemble = EnsembleNode(name="e", kind="ensemble", members=["m"], timeout_s=3)
    assert CallSettings.of(ensemble).timeout_s is None  # its timeout_s waits for members


def test_the_readmes_failure_semantics_block_is_a_valid_graph_section() -> None:
    # Also: YAML 1.1 reads the unquoted `on:` key of `retries` as true; it still means `on`.
    import os
    import re

    import yaml

    from graphs.spec import GraphSpec

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    readme = open(os.path.join(root, "README.md")).read()
    section = readme[readme.index("## Failure semantics") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    data = yaml.safe_load(block.group(1))
    stable = {"name": "stable", "kind": "model", "runtime": "onnx", "model_path": "s.onnx"}
    graph = GraphSpec.model_validate(
        {**data, "name": "g", "inputs": [{"name": "x"}], "entry": "split"}
        | {"nodes": [*data["nodes"], stable]}
    )
    assert graph.timeout_s == 10 and graph.retry_budget == 2
    candidate = graph.node("candidate")
    assert candidate.timeout_s == 2 and candidate.retries.on == ["replica_died", "unavailable"]
    assert graph.node("split").fallback == "stable"
