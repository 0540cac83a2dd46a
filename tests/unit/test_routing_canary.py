"""Canary: ramp through the steps, roll back on a gate breach, control actions, snapshots."""

from __future__ import annotations

import json
import random

import pytest
from pydantic import ValidationError

from nodes.errors import GraphError
from routing.canary import Canary, CanaryStateError
from routing.config import CanaryConfig, CanaryGates
from routing.weighted import WeightedRandom

CONFIG = CanaryConfig(
    steps=[1, 5, 25, 50, 100],
    min_step_seconds=60,
    min_candidate_requests=100,
    min_stable_requests=100,
    gates=CanaryGates(max_error_rate_delta=0.05, max_p95_ratio=1.5),
)


def simulate(
    canary: Canary,
    *,
    candidate_error: float,
    candidate_latency_ms: float = 20.0,
    seed: int = 0,
    max_requests: int = 50_000,
    dt: float = 0.1,
) -> float:
    """Serve requests 0.1 s apart, split by the canary's weights, evaluating after each one.

    Stable fails 1 % of requests; latencies are lognormal around 20 ms (candidate's median is
    ``candidate_latency_ms``). Returns the clock when the canary stopped ramping.
    """
    rng = random.Random(seed)
    now = 0.0
    for _ in range(max_requests):
        now += dt
        arm = "candidate" if WeightedRandom(canary.weights, rng).choose() == 1 else "stable"
        error = candidate_error if arm == "candidate" else 0.01
        median = candidate_latency_ms if arm == "candidate" else 20.0
        canary.record(arm, rng.random() >= error, median * rng.lognormvariate(0, 0.3))
        canary.evaluate(now)
        if not canary.active:
            return now
    raise AssertionError(f"canary still {canary.status} after {max_requests} requests")


def test_healthy_candidate_is_promoted_through_every_step() -> None:
    canary = Canary(CONFIG, now=0.0)
    assert canary.weights == [0.99, 0.01]
    end = simulate(canary, candidate_error=0.01)
    assert canary.status == "promoted"
    assert canary.weights == [0.0, 1.0]
    assert [e.action for e in canary.history] == [
        "start",
        "advance",
        "advance",
        "advance",
        "advance",
        "promote",
    ]
    assert [e.candidate_percent for e in canary.history] == [1, 5, 25, 50, 100, 100]
    advances = canary.history[1:]
    for event in advances:
        # Every step was held >= 60 s and saw >= 100 candidate requests, with no breach.
        assert event.figures["step_seconds"] >= 60
        assert event.figures["candidate"]["requests"] >= 100
        assert event.figures["breaches"] == []
        assert event.automatic
    # At 100 % the stable arm gets no traffic: the run's stable figures are the baseline.
    assert advances[-1].figures["baseline"] == "overall"
    assert advances[-1].reason == "passed the last step"
    assert end > 5 * 60
    assert canary.evaluate(end + 1000) == []  # promoted is final


def test_candidate_failing_thirty_percent_is_rolled_back() -> None:
    canary = Canary(CONFIG, now=0.0)
    simulate(canary, candidate_error=0.30)
    assert canary.status == "rolled_back"
    assert canary.weights == [1.0, 0.0]
    event = canary.history[-1]
    assert event.action == "rollback" and event.automatic
    assert event.stage == 0
    # The gates are checked as soon as the candidate has 100 requests in the step.
    candidate = event.figures["candidate"]
    assert candidate["requests"] == 100
    assert 0.2 <= candidate["error_rate"] <= 0.4  # 30 % of 100 requests, sd 4.6 points
    assert event.figures["stable"]["error_rate"] < 0.03
    breach = event.figures["breaches"][0]
    assert breach["gate"] == "max_error_rate_delta"
    assert breach["limit"] == 0.05
    assert breach["observed"] == pytest.approx(
        candidate["error_rate"] - event.figures["stable"]["error_rate"]
    )
    assert event.reason.startswith("gate breached: candidate error rate ")
    assert "> max_error_rate_delta 0.05" in event.reason
    assert json.loads(json.dumps(event.to_dict())) == event.to_dict()  # reason, figures: JSON


def test_slow_candidate_is_rolled_back_on_p95() -> None:
    canary = Canary(CONFIG, now=0.0)
    simulate(canary, candidate_error=0.01, candidate_latency_ms=60.0)
    assert canary.status == "rolled_back"
    gates = [b["gate"] for b in canary.history[-1].figures["breaches"]]
    assert gates == ["max_p95_ratio"]
    assert canary.history[-1].figures["breaches"][0]["observed"] == pytest.approx(3.0, rel=0.25)


def test_reward_gate_rolls_back_a_worse_candidate() -> None:
    config = CanaryConfig(
        steps=[50, 100],
        min_step_seconds=0,
        min_candidate_requests=10,
        min_stable_requests=10,
        gates=CanaryGates(min_reward_delta=-0.05, min_reward_count=20),
    )
    canary = Canary(config, now=0.0)
    for _ in range(10):
        canary.record("stable", True, 10.0)
        canary.record("candidate", True, 10.0)
    for i in range(19):
        canary.record_reward("stable", 1.0 if i % 5 else 0.0)  # mean 0.8
        canary.record_reward("candidate", 1.0 if i % 2 else 0.0)  # mean ~0.5
    # 19 rewards each: the reward gate waits for min_reward_count; the rest pass: advance.
    assert [e.action for e in canary.evaluate(1.0)] == ["advance"]
    for _ in range(10):
        canary.record("stable", True, 10.0)
        canary.record("candidate", True, 10.0)
    for i in range(20):
        canary.record_reward("stable", 1.0 if i % 5 else 0.0)
        canary.record_reward("candidate", 1.0 if i % 2 else 0.0)
    (event,) = canary.evaluate(2.0)
    assert event.action == "rollback"
    (breach,) = event.figures["breaches"]
    assert breach["gate"] == "min_reward_delta"
    assert breach["observed"] == pytest.approx(0.5 - 0.8)
    assert "candidate mean reward 0.500 - stable's 0.800 = -0.300 < min_reward_delta -0.05" in (
        event.reason
    )


def fill_step(canary: Canary, n: int, *, ok: bool = True) -> None:
    for _ in range(n):
        canary.record("stable", True, 10.0)
        canary.record("candidate", ok, 10.0)


def test_a_step_needs_both_its_time_and_its_requests() -> None:
    canary = Canary(CONFIG, now=100.0)
    fill_step(canary, 99)
    assert canary.evaluate(1000.0) == []  # long enough, but 99 candidate requests
    fill_step(canary, 1)
    assert canary.evaluate(159.9) == []  # enough requests, 59.9 s
    (event,) = canary.evaluate(160.0)
    assert (event.action, event.stage, canary.candidate_percent) == ("advance", 1, 5)
    assert canary.step_started_at == 160.0
    assert canary.window["candidate"].requests == 0  # the new step starts from scratch
    assert canary.overall["candidate"].requests == 100


def test_pause_holds_the_step_but_the_gates_keep_watching() -> None:
    canary = Canary(CONFIG, now=0.0)
    fill_step(canary, 100)
    event = canary.pause(10.0, reason="investigating")
    assert (event.action, event.status, event.automatic) == ("pause", "paused", False)
    assert canary.evaluate(500.0) == []
    assert canary.weights == [0.99, 0.01]
    with pytest.raises(CanaryStateError, match="cannot pause a canary that is paused"):
        canary.pause(11.0)
    canary.resume(600.0)
    assert [e.action for e in canary.evaluate(600.0)] == ["advance"]  # paused time counted
    canary.pause(601.0)
    fill_step(canary, 100, ok=False)
    (event,) = canary.evaluate(602.0)
    assert (event.action, canary.status) == ("rollback", "rolled_back")


def test_manual_promote_and_rollback() -> None:
    canary = Canary(CONFIG, now=0.0)
    event = canary.promote(5.0, reason="looks good")
    assert (event.action, event.reason, canary.weights) == ("promote", "looks good", [0.0, 1.0])
    with pytest.raises(CanaryStateError) as info:
        canary.resume(6.0)
    assert info.value.status_code == 409
    assert isinstance(info.value, GraphError) and isinstance(info.value, ValueError)
    event = canary.rollback(7.0)
    assert (event.action, event.automatic, canary.weights) == ("rollback", False, [1.0, 0.0])
    for action in (canary.promote, canary.rollback, canary.pause, canary.resume):
        with pytest.raises(CanaryStateError, match="rolled_back"):
            action(8.0)
    assert [e.action for e in canary.history] == ["start", "promote", "rollback"]


def test_snapshot_round_trip_continues_identically() -> None:
    canary = Canary(CONFIG, now=0.0)
    fill_step(canary, 150)
    canary.record_reward("candidate", 0.5)
    canary.evaluate(61.0)
    fill_step(canary, 30)
    data = json.loads(json.dumps(canary.to_dict()))
    restored = Canary.from_dict(data)
    assert restored.to_dict() == canary.to_dict()
    assert repr(restored) == "Canary(status='ramping', stage=1, candidate_percent=5)"
    fill_step(canary, 70)
    fill_step(restored, 70)
    assert canary.evaluate(200.0)[0].to_dict() == restored.evaluate(200.0)[0].to_dict()
    with pytest.raises(ValueError, match="snapshot version"):
        Canary.from_dict({**data, "version": 99})


def test_replica_deltas_count_towards_their_own_step_only() -> None:
    canary = Canary(CONFIG, now=0.0)
    early = canary.new_delta()
    for _ in range(100):
        early.record("candidate", True, 10.0)
    late = canary.new_delta()
    assert canary.apply(early)
    canary.evaluate(60.0)  # advances to stage 1
    for _ in range(5):
        late.record("candidate", False, 10.0)
    assert canary.apply(late)
    assert canary.window["candidate"].requests == 0  # recorded in stage 0: not this step's
    assert canary.overall["candidate"].requests == 105
    current = canary.new_delta()
    current.record("stable", True, 5.0)
    current.record_reward("stable", 1.0)
    assert canary.apply(type(current).from_dict(json.loads(json.dumps(current.to_dict()))))
    assert canary.window["stable"].requests == 1
    other_run = Canary(CONFIG, now=1.0).new_delta()
    other_run.record("candidate", False, 1.0)
    assert not canary.apply(other_run)
    assert canary.overall["candidate"].requests == 105
    with pytest.raises(ValueError, match="unknown canary arm 'shadow'"):
        current.record("shadow", True, 1.0)


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="steps must increase strictly"):
        CanaryConfig(steps=[5, 1, 100])
    with pytest.raises(ValidationError, match=r"percentage in \(0, 100\]"):
        CanaryConfig(steps=[0, 50, 100])
    with pytest.raises(ValidationError, match=r"percentage in \(0, 100\]"):
        CanaryConfig(steps=[50, 150])
    with pytest.raises(ValidationError):
        CanaryConfig.model_validate({"steps": [10, 100], "gate": {}})
    assert CanaryConfig().steps == [1, 5, 25, 50, 100]


def test_state_view() -> None:
    canary = Canary(CONFIG, now=0.0)
    fill_step(canary, 10)
    state = canary.state(30.0)
    assert state["status"] == "ramping"
    assert state["weights"] == [0.99, 0.01]
    assert state["step"]["candidate"]["requests"] == 10
    assert state["step"]["step_seconds"] == 30.0
    assert state["last_event"]["action"] == "start"
    assert json.loads(json.dumps(state)) == state
