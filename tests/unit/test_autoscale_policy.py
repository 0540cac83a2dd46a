"""autoscale.decide and ScalingSettings: one node's decisions, exact, with an injected clock."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from autoscale import NodeMetrics, ScalingSettings, capacity_need, decide, queue_wait_ms
from autoscale.capacity import staffing_need

QUEUE_ONLY = ScalingSettings()  # target 2 per replica, 1..10 replicas, step 4
SLO = ScalingSettings(slo_p95_ms=300)


def m(current: int, ongoing: float, **kwargs: Any) -> NodeMetrics:
    return NodeMetrics(current_replicas=current, ongoing_requests=ongoing, **kwargs)


# --- settings ----------------------------------------------------------------------------------


def test_settings_defaults() -> None:
    s = ScalingSettings()
    assert (s.slo_p95_ms, s.target_queue_per_replica, s.min_replicas, s.max_replicas) == (
        None,
        2.0,
        1,
        10,
    )
    assert (s.upscale_cooldown_s, s.downscale_cooldown_s, s.max_step) == (3.0, 30.0, 4)
    assert (s.downscale_headroom, s.target_utilisation) == (0.6, 0.75)
    assert repr(ScalingSettings(slo_p95_ms=250, max_replicas=16)) == (
        "ScalingSettings(slo_p95_ms=250.0, max_replicas=16)"
    )


def test_every_field_is_described() -> None:
    assert all(f.description for f in ScalingSettings.model_fields.values())


def test_min_above_max_quotes_both_values() -> None:
    with pytest.raises(ValidationError) as info:
        ScalingSettings(min_replicas=5, max_replicas=2)
    assert info.value.errors()[0]["msg"] == (
        "Value error, min_replicas (5) must be <= max_replicas (2)"
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("slo_p95_ms", 0, "Input should be greater than 0"),
        ("target_queue_per_replica", -1, "Input should be greater than 0"),
        ("min_replicas", -1, "Input should be greater than or equal to 0"),
        ("max_replicas", 0, "Input should be greater than or equal to 1"),
        ("upscale_cooldown_s", -0.5, "Input should be greater than or equal to 0"),
        ("max_step", 0, "Input should be greater than or equal to 1"),
        ("downscale_headroom", 1.0, "Input should be less than 1"),
        ("downscale_headroom", 0, "Input should be greater than 0"),
        ("target_utilisation", 1.5, "Input should be less than or equal to 1"),
        ("max_surge", 3, "Extra inputs are not permitted"),
    ],
)
def test_invalid_settings(field: str, value: float, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ScalingSettings(**{field: value})
    (error,) = info.value.errors()
    assert error["loc"] == (field,)
    assert error["msg"] == message


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        QUEUE_ONLY.max_replicas = 3  # type: ignore[misc]


def test_metrics_reject_negative_values() -> None:
    with pytest.raises(ValueError, match="ongoing_requests must be a finite number >= 0, got -1"):
        m(2, -1)
    with pytest.raises(ValueError, match="current_replicas must be >= 0, got -2"):
        m(-2, 0)
    with pytest.raises(ValueError, match="p95_ms must be None or a finite number >= 0"):
        m(1, 0, p95_ms=float("nan"))


# --- scaling up --------------------------------------------------------------------------------


def test_up_in_proportion_to_queue() -> None:
    # 12 ongoing on 2 replicas = 6 per replica, 3x the target of 2: ceil(2 * 3) = 6 = 2 + 4.
    desired, state = decide(QUEUE_ONLY, m(2, 12), {}, now=100.0)
    assert desired == 6
    assert state == {"last_change_s": 100.0, "comfortable_since_s": None, "reason": "up:load"}


def test_up_is_bounded_by_max_step() -> None:
    # 20 ongoing on 2: ratio 5, ceil(2 * 5) = 10, but at most 2 + max_step 4 = 6.
    assert decide(QUEUE_ONLY, m(2, 20), {}, 0.0)[0] == 6
    assert decide(QUEUE_ONLY.model_copy(update={"max_step": 2}), m(2, 20), {}, 0.0)[0] == 4


def test_up_is_bounded_by_max_replicas() -> None:
    # 40 on 8: ratio 2.5 -> 20, step allows 12, max_replicas 10.
    assert decide(QUEUE_ONLY, m(8, 40), {}, 0.0)[0] == 10


def test_up_adds_at_least_one() -> None:
    # 4.2 on 2: ratio 1.05, ceil(2.1) = 3.
    assert decide(QUEUE_ONLY, m(2, 4.2, queued_requests=1), {}, 0.0)[0] == 3
    # 2.1 on 1: ratio 1.05, ceil(1.05) = 2.
    assert decide(QUEUE_ONLY, m(1, 2.1, queued_requests=1), {}, 0.0)[0] == 2


def test_over_target_by_chance_is_no_queue() -> None:
    # Over target on average, but nothing waits for a replica: hold. Twice the target in
    # flight is a queue whatever else shows.
    assert decide(QUEUE_ONLY, m(2, 4.2), {}, 0.0)[0] == 2
    assert decide(QUEUE_ONLY, m(2, 8.4), {}, 0.0)[0] == 5
    # With an SLO, a queue that keeps p95 under 0.8 of it is let be.
    assert decide(SLO, m(2, 6, queued_requests=2, p95_ms=200), {}, 0.0)[0] == 2
    assert decide(SLO, m(2, 6, queued_requests=2, p95_ms=240), {}, 0.0)[0] == 3


def test_up_on_latency_alone() -> None:
    # Load exactly on target (ratio 1, not over); p95 450 of an SLO of 300: ratio 1.5, and
    # with an SLO the node grows until latency is back under fill (0.8) of it:
    # ceil(3 * 1.5 / 0.8) = 6.
    desired, state = decide(SLO, m(3, 6, queued_requests=1, p95_ms=450), {}, 0.0)
    assert (desired, state["reason"]) == (6, "up:latency")


def test_a_slow_node_that_makes_nobody_wait_gets_no_replicas_for_its_latency() -> None:
    # Over the SLO with nothing waiting: the requests themselves are slow, replicas idle.
    assert decide(SLO, m(3, 3, p95_ms=450), {}, 0.0)[0] == 3


def test_with_an_slo_up_follows_latency_over_fill() -> None:
    # Load ratio 2 (8 on 2), latency ratio 1.5: the SLO judges, ceil(2 * 1.5 / 0.8) = 4. None
    # of that latency is a wait for a replica: one short window's p95 may be noise, so it
    # must hold for a second first.
    slow = m(2, 8, p95_ms=450)
    desired, state = decide(SLO, slow, {}, 0.0)
    assert (desired, state["reason"], state["pressed_since_s"]) == (2, "hold:confirming", 0.0)
    assert decide(SLO, slow, state, 0.9)[1]["reason"] == "hold:confirming"
    assert decide(SLO, slow, state, 1.0) == (
        4,
        {"last_change_s": 1.0, "comfortable_since_s": None, "reason": "up:latency"},
    )
    # A reading that stops pressing starts the second again.
    _, calm = decide(SLO, m(2, 2, p95_ms=100), state, 0.5)
    assert "pressed_since_s" not in calm
    assert decide(SLO, slow, calm, 1.0)[1]["reason"] == "hold:confirming"


def test_the_wait_for_a_replica_counts_against_the_slo() -> None:
    # Replicas answer in 100 ms, well inside an SLO of 300 ms, but 8 requests queue in the
    # callers for one replica that serves one each 50 ms: they wait 400 ms, so callers see
    # 500 ms: ratio 1.67, ceil(1 * 1.67 / 0.8) = 3.
    slow = m(1, 10, queued_requests=8, p95_ms=100, service_time_ms=50)
    assert queue_wait_ms(slow) == pytest.approx(400)
    assert decide(SLO, slow, {}, 0.0)[0] == 3
    # Without a service time the arrival rate drains the queue: 8 / 20 req/s = 400 ms.
    assert queue_wait_ms(m(1, 10, queued_requests=8, arrival_rate=20)) == pytest.approx(400)
    assert queue_wait_ms(m(1, 2, p95_ms=100, service_time_ms=50)) == 0.0


def test_up_on_arrival_rate_before_the_queue_grows() -> None:
    # 100 req/s of 30 ms = 3 busy replicas; at 75% utilisation that needs ceil(4) = 4.
    assert capacity_need(100, 30, 0.75) == 4
    waits = m(2, 2, queued_requests=1, arrival_rate=100, service_time_ms=30)
    desired, state = decide(QUEUE_ONLY, waits, {}, 0.0)
    assert (desired, state["reason"]) == (4, "up:rate")


def test_no_rate_sizing_while_nothing_waits_for_a_replica() -> None:
    # Two clients that wait for their answers keep one 2-slot replica of 100 ms full (20 req/s
    # at 50 ms a request): nothing queues, more replicas would only idle.
    closed = m(1, 2, queued_requests=0.0, arrival_rate=19.5, service_time_ms=50)
    assert decide(QUEUE_ONLY, closed, {}, 0.0)[0] == 1


def test_no_rate_sizing_without_a_service_time() -> None:
    assert capacity_need(100, None, 0.75) == 0
    assert decide(QUEUE_ONLY, m(2, 2, arrival_rate=100), {}, 0.0)[0] == 2


def test_upscale_cooldown_counts_from_the_last_change() -> None:
    state: dict[str, Any] = {"last_change_s": 10.0, "comfortable_since_s": None}
    desired, held = decide(QUEUE_ONLY, m(6, 30), state, now=12.9)
    assert (desired, held["reason"], held["last_change_s"]) == (6, "hold:upscale_cooldown", 10.0)
    desired, state = decide(QUEUE_ONLY, m(6, 30), held, now=13.0)
    assert (desired, state["last_change_s"]) == (10, 13.0)


def test_hold_at_max_replicas() -> None:
    desired, state = decide(QUEUE_ONLY, m(10, 100, p95_ms=900), {}, 0.0)
    assert (desired, state["reason"]) == (10, "hold:max_replicas")


# --- scaling down: slowly, with hysteresis ------------------------------------------------------


def test_down_only_after_a_full_cooldown_of_comfort() -> None:
    # 3 on 6 = 0.5 per replica (ratio 0.25), p95 60 of 300 (0.2): both under headroom 0.6.
    quiet = m(6, 3, p95_ms=60)
    desired, state = decide(SLO, quiet, {}, now=0.0)
    assert (desired, state) == (
        6,
        {
            "comfortable_since_s": 0.0,
            "last_change_s": None,
            "quiet": True,  # nothing waited for a replica since
            "calm": {  # what was read since
                "load_sum": 0.25,
                "count": 1,
                "peak_load": 0.25,
                "first_rate": None,
                "rate_sum": 0.0,
                "recent": 0.25,
                "at": 0.0,
            },
            "reason": "hold:downscale_cooldown",
        },
    )
    desired, state = decide(SLO, quiet, state, now=29.9)
    assert (desired, state["comfortable_since_s"]) == (6, 0.0)
    # After 30 s: ceil(6 * 0.25 / 0.8) = 2, within max_step 4 of 6.
    desired, state = decide(SLO, quiet, state, now=30.0)
    assert (desired, state) == (
        2,
        {
            "comfortable_since_s": 30.0,
            "last_change_s": 30.0,
            "quiet": True,
            "calm": {
                "load_sum": 0.0,
                "count": 0,
                "peak_load": 0.0,
                "first_rate": None,
                "rate_sum": 0.0,
                "recent": None,
                "at": None,
            },
            "reason": "down",
        },
    )


def test_down_is_bounded_by_max_step_and_min_replicas() -> None:
    state = {"comfortable_since_s": 0.0}
    small_step = SLO.model_copy(update={"max_step": 1})
    assert decide(small_step, m(6, 3, p95_ms=60), state, 30.0)[0] == 5
    high_min = SLO.model_copy(update={"min_replicas": 4})
    assert decide(high_min, m(6, 3, p95_ms=60), state, 30.0)[0] == 4
    desired, new = decide(high_min, m(4, 0), state, 60.0)
    assert (desired, new["reason"]) == (4, "hold:min_replicas")


def test_each_step_down_needs_its_own_cooldown() -> None:
    desired, state = decide(QUEUE_ONLY, m(10, 0), {"comfortable_since_s": 0.0}, 30.0)
    assert desired == 6
    assert decide(QUEUE_ONLY, m(6, 0), state, 59.0)[0] == 6
    assert decide(QUEUE_ONLY, m(6, 0), state, 60.0)[0] == 2


def test_rising_load_resets_the_comfort_timer() -> None:
    _, state = decide(SLO, m(6, 3, p95_ms=60), {}, now=0.0)
    # 10.2 on 6 = 1.7 per replica: ratio 0.85, over the fill of 0.8 though under target.
    # Without an SLO that ends the comfort; with one, only over the target (the SLO judges).
    assert decide(QUEUE_ONLY, m(6, 10.2), {"comfortable_since_s": 0.0}, 20.0)[1] == {
        "comfortable_since_s": None,
        "last_change_s": None,
        "reason": "hold",
    }
    assert decide(SLO, m(6, 10.2, p95_ms=60), state, 20.0)[1]["comfortable_since_s"] == 0.0
    desired, state = decide(SLO, m(6, 13.2, p95_ms=60), state, now=20.0)
    assert (desired, state["comfortable_since_s"], state["reason"]) == (6, None, "hold")
    _, state = decide(SLO, m(6, 3, p95_ms=60), state, now=30.0)
    assert state["comfortable_since_s"] == 30.0
    assert decide(SLO, m(6, 3, p95_ms=60), state, now=59.0)[0] == 6
    assert decide(SLO, m(6, 3, p95_ms=60), state, now=60.0)[0] == 2


def test_a_step_down_needs_a_calm_mean_not_one_calm_reading() -> None:
    # Readings between 0.45 and 0.75 (half the target, read over short windows): each one
    # under the fill of 0.8, their mean 0.6 at the headroom: hold. Calmer, and it steps down.
    state: dict[str, Any] = {}
    for i in range(61):
        ongoing = 6 * 2 * (0.45 if i % 2 else 0.75)
        desired, state = decide(QUEUE_ONLY, m(6, ongoing), state, i * 0.5)
    assert (desired, state["reason"]) == (6, "hold:busy")
    calmer = {**state, "calm": {"load_sum": 0.5 * 60, "count": 60, "recent": 0.5, "at": 29.5}}
    assert decide(QUEUE_ONLY, m(6, 6), calmer, 30.0)[0] == 4  # ceil(6 * 0.5 / 0.8)


def test_a_step_down_is_sized_from_the_recent_load() -> None:
    # The period's mean (0.5) still holds the load before it fell; the step follows the
    # load of the last seconds (time constant 2 s): 0.1 read for 4 s of 30 ended near it.
    state: dict[str, Any] = {}
    for i in range(60):
        ongoing = 6 * 2 * (0.55 if i < 52 else 0.1)
        desired, state = decide(QUEUE_ONLY, m(6, ongoing), state, i * 0.5)
    assert desired == 6 and state["calm"]["load_sum"] / state["calm"]["count"] > 0.45
    desired, state = decide(QUEUE_ONLY, m(6, 1.2), state, 30.0)
    assert (desired, state["reason"]) == (2, "down")  # ceil(6 * ~0.12 / 0.8), not 4


def test_high_latency_blocks_scaling_down_while_requests_wait() -> None:
    # Load is low but p95 200 of 300 (0.67) is over the headroom, and requests wait.
    waiting = m(6, 3, queued_requests=1, p95_ms=200)
    desired, state = decide(SLO, waiting, {"comfortable_since_s": 0.0}, 100.0)
    assert (desired, state["comfortable_since_s"]) == (6, None)
    # Nobody waits: that p95 is the node's own, fewer replicas keep it; down by load alone,
    # ceil(6 * 0.25 / 0.8) = 2.
    own = m(6, 3, p95_ms=200)
    assert decide(SLO, own, {"comfortable_since_s": 0.0}, 100.0)[0] == 2


def test_down_keeps_capacity_for_the_arrivals() -> None:
    # 100 req/s of 40 ms = 4 busy replicas. Queue alone would say ceil(10 * 0.25 / 0.8) = 4,
    # but down steps keep utilisation under 0.75 * 0.8 = 0.6: ceil(4 / 0.6) = 7.
    quiet = m(10, 5, arrival_rate=100, service_time_ms=40)
    assert decide(QUEUE_ONLY, quiet, {"comfortable_since_s": 0.0}, 30.0)[0] == 7


def test_with_an_slo_down_keeps_square_root_staffing() -> None:
    # 100 req/s of 50 ms = 5 busy replicas: 5 + sqrt(5) = 7.2, so 8 (a headroom would keep
    # ceil(5 / 0.6) = 9); 20 req/s = 1 busy: 1 + 1 = 2.
    assert (staffing_need(100, 50), staffing_need(20, 50), staffing_need(None, 50)) == (8, 2, 0)
    quiet = m(10, 4, p95_ms=60, arrival_rate=100, service_time_ms=50)
    assert decide(SLO, quiet, {"comfortable_since_s": 0.0}, 30.0)[0] == 8


def test_down_sizes_for_the_calm_periods_mean_rate_unless_it_fell() -> None:
    # One window read 80 req/s, the period's mean was 100: sized for 100 (a window's rate is
    # noisy). After a fall under half the mean, for the rate now.
    since = {"comfortable_since_s": 0.0, "calm": {"count": 10, "rate_sum": 1000.0}}
    any_step = SLO.model_copy(update={"max_step": 10})
    noisy = m(10, 4, p95_ms=60, arrival_rate=80, service_time_ms=50)
    assert decide(any_step, noisy, since, 30.0)[0] == 8  # staffing for ~98 req/s, not 6 for 80
    fell = m(10, 1, p95_ms=60, arrival_rate=20, service_time_ms=50)
    assert decide(any_step, fell, since, 30.0)[0] == 2


def test_no_room_to_scale_down_holds() -> None:
    # 3.3 on 3: ratio 0.55 < 0.6, but ceil(3 * 0.55 / 0.8) = 3 removes nothing.
    desired, state = decide(QUEUE_ONLY, m(3, 3.3), {"comfortable_since_s": 0.0}, 30.0)
    assert (desired, state["reason"], state["comfortable_since_s"]) == (3, "hold:no_room", 0.0)


# --- bounds and cold start ---------------------------------------------------------------------


def test_out_of_bounds_counts_are_corrected_at_once() -> None:
    recent = {"last_change_s": 99.0}
    assert decide(ScalingSettings(min_replicas=3), m(1, 0), recent, 100.0)[0] == 3
    assert decide(ScalingSettings(max_replicas=4), m(9, 50), recent, 100.0)[0] == 4


def test_cold_start_from_zero() -> None:
    to_zero = ScalingSettings(min_replicas=0)
    desired, state = decide(to_zero, m(0, 7), {}, 5.0)
    assert (desired, state["reason"]) == (4, "up:cold_start")  # ceil(7 / 2) = 4
    assert decide(to_zero, m(0, 30), {}, 5.0)[0] == 4  # ceil(15), max_step 4
    assert decide(to_zero, m(0, 0), {}, 5.0)[0] == 0


def test_a_node_that_served_then_went_idle_gets_back_to_zero() -> None:
    # A few requests, then nothing: the calm period's mean load is above 0, but with nothing
    # in flight and nothing arriving the node is idle, and an idle node needs no replica.
    to_zero = ScalingSettings(min_replicas=0, downscale_cooldown_s=2)
    state: dict[str, Any] = {}
    t, desired = 0.0, 1
    for load in (0.4, 0.3, 0.2):
        desired, state = decide(to_zero, m(1, load, arrival_rate=2.0), state, t)
        t += 0.5
    assert desired == 1
    while t < 4.0 and desired == 1:
        desired, state = decide(to_zero, m(1, 0, arrival_rate=0.0), state, t)
        t += 0.5
    assert (desired, state["reason"]) == (0, "down")


def test_decisions_stay_in_bounds_and_state_is_json() -> None:
    rng = random.Random(7)
    settings = ScalingSettings(slo_p95_ms=200, min_replicas=2, max_replicas=7, max_step=3)
    state: dict[str, Any] = {}
    current = 2
    for tick in range(2000):
        metrics = m(
            current,
            rng.uniform(0, 40),
            p95_ms=rng.choice([None, rng.uniform(10, 600)]),
            arrival_rate=rng.choice([None, rng.uniform(0, 300)]),
            service_time_ms=rng.uniform(5, 80),
        )
        desired, state = decide(settings, metrics, state, now=tick * 0.5)
        assert 2 <= desired <= 7
        assert abs(desired - current) <= 3
        assert json.loads(json.dumps(state)) == state
        current = desired


def test_replica_stats_stay_bounded_without_anyone_asking_for_them() -> None:
    # A node that is not autoscaled never has its stats read: every update trims them.
    from autoscale.stats import ReplicaStats

    now = [0.0]
    stats = ReplicaStats(clock=lambda: now[0])
    for _ in range(100_000):
        start = stats.started()
        now[0] += 0.001  # 1,000 requests/s for 100 s
        stats.finished(start)
    held = len(stats._arrivals) + len(stats._done) + len(stats._held)
    assert held <= 3 * 5_001  # the 5 s rate window's worth, not 300,000
    assert stats.snapshot()["arrival_rate"] == pytest.approx(1000, rel=0.01)


# --- probing one replica fewer -------------------------------------------------------------------

PROBE = ScalingSettings(slo_p95_ms=400, target_queue_per_replica=2)
#: Two clients that wait for their answers, on 2 replicas of a 2-slot, 100 ms node.
CLOSED = {"queued_requests": 0.0, "arrival_rate": 19.5, "service_time_ms": 50, "p95_ms": 100}


def _comfortable_for(settings: ScalingSettings, metrics: NodeMetrics, until: float) -> Any:
    state: dict[str, Any] = {}
    t = 0.0
    while t < until:
        desired, state = decide(settings, metrics, state, t)
        assert desired == metrics.current_replicas, state
        t += 0.5
    return decide(settings, metrics, state, until)


def test_a_quiet_node_probes_one_replica_fewer_than_the_headroom_allows() -> None:
    # Headroom says 2 (ceil(19.5 * 0.05 / 0.6)); one replica still holds both clients within
    # target and serves 19.5 of its 20 req/s: with nothing waiting for 30 s, try it.
    desired, state = _comfortable_for(PROBE, m(2, 2, **CLOSED), 30.0)
    assert (desired, state["reason"], state["probe"]) == (1, "down:probe", {"count": 1, "at": 30.0})
    # At one replica the clients still wait for nothing: no scale-up by rate.
    assert decide(PROBE, m(1, 2, **CLOSED), state, 31.0)[0] == 1


def test_no_probe_once_a_request_waited_for_a_replica() -> None:
    state: dict[str, Any] = {}
    for t in range(0, 31):
        queued = 1.0 if t == 10 else 0.0
        desired, state = decide(PROBE, m(2, 2, **{**CLOSED, "queued_requests": queued}), state, t)
    assert (desired, state["reason"]) == (2, "hold:no_room")


def test_no_probe_when_requests_in_flight_once_would_overfill_one_fewer() -> None:
    # The same mean (2 in flight at 19.5 req/s), but open-loop: one 1-s window held 3, 1.5x
    # one replica's target of 2, and nothing had to wait for a replica. No probe.
    def probe_after(peak: float) -> tuple[int, str]:
        state: dict[str, Any] = {}
        for i in range(61):
            ongoing = peak if i == 20 else 2.0
            desired, state = decide(PROBE, m(2, ongoing, **CLOSED), state, i * 0.5)
        return desired, state["reason"]

    assert probe_after(3.0) == (2, "hold:no_room")
    # A fixed set of clients' metrics jitter a little over their count: 2.3 still probes.
    assert probe_after(2.3) == (1, "down:probe")


def test_a_probe_undone_is_not_repeated_until_the_rate_falls() -> None:
    _, state = _comfortable_for(PROBE, m(2, 2, **CLOSED), 30.0)
    # Open-loop traffic after all: requests queue at one replica, their wait (6 x 50 ms) takes
    # callers' latency to the SLO, it goes back up.
    desired, state = decide(PROBE, m(1, 8, **{**CLOSED, "queued_requests": 6.0}), state, 34.0)
    assert desired > 1 and state["probe_failed"] == {"count": 1, "rate": 19.5}
    # Comfortable and quiet again for a full cooldown: not at that rate, but at a lower one.
    again = {"comfortable_since_s": 100.0, "quiet": True, "probe_failed": state["probe_failed"]}
    assert decide(PROBE, m(2, 2, **CLOSED), again, 130.0)[0] == 2
    slower = {**CLOSED, "arrival_rate": 15.0}
    assert decide(PROBE, m(2, 2, **slower), again, 130.0)[0] == 1


# --- LLM engines: their own signals ----------------------------------------------------------


def test_an_llm_node_scales_up_when_its_engine_makes_requests_wait() -> None:
    # Nothing waits at the handle (the replica takes them all), but the engine's batch is
    # full: 6 requests in its scheduler's queue.
    full = m(1, 1.5, engine_waiting=6, kv_cache_usage=0.3)
    desired, state = decide(QUEUE_ONLY, full, {}, 0.0)
    assert (desired, state["reason"]) == (2, "up:load")
    # The KV cache over its target, requests waiting: in proportion (0.95 / 0.85 -> 2 of 1).
    assert decide(QUEUE_ONLY, m(1, 1, engine_waiting=2, kv_cache_usage=0.95), {}, 0.0)[0] == 2


def test_with_a_ttft_slo_an_engine_queue_is_let_be_while_first_tokens_come_in_time() -> None:
    llm = ScalingSettings(ttft_slo_p95_ms=500)
    quick = m(1, 1, engine_waiting=3, kv_cache_usage=0.2, ttft_p95_ms=150)
    assert decide(llm, quick, {}, 0.0)[0] == 1
    late = m(1, 1, engine_waiting=3, kv_cache_usage=0.2, ttft_p95_ms=1000)
    desired, state = decide(llm, late, {}, 0.0)
    assert (desired, state["reason"]) == (3, "up:latency")  # ceil(1 * 2.0 / 0.8)


def test_an_llm_node_with_a_busy_engine_is_not_comfortable() -> None:
    busy = m(2, 0.5, engine_waiting=0, kv_cache_usage=0.7)  # 0.7 / 0.85: over the headroom
    desired, state = decide(QUEUE_ONLY, busy, {"comfortable_since_s": 0.0}, 100.0)
    assert (desired, state["reason"]) == (2, "hold")
    idle = m(2, 0.5, engine_waiting=0, kv_cache_usage=0.1)
    assert decide(QUEUE_ONLY, idle, {"comfortable_since_s": 0.0}, 100.0)[0] == 1


def test_replicas_still_starting_are_not_asked_for_again() -> None:
    # 5 wanted, 2 serving: their figures (20 queued, 500 ms wait) call for ceil(2 * 2 / 0.8)
    # = 5, which are on their way.
    starting = m(5, 24, queued_requests=20, p95_ms=100, service_time_ms=50, running_replicas=2)
    desired, state = decide(SLO, starting, {}, 0.0)
    assert (desired, state["reason"]) == (5, "hold:starting")
    # With 3 wanted, the same figures call for 2 more than are coming.
    desired, state = decide(SLO, replace(starting, current_replicas=3), {}, 0.0)
    assert (desired, state["reason"]) == (5, "up:latency")


def test_with_an_slo_a_queue_of_waiting_clients_within_it_adds_no_replicas() -> None:
    # 24 clients that send as fast as answers come keep 12 queued at 6 replicas whatever the
    # count; by rate (120 req/s of 50 ms) more would fit the target utilisation, but callers
    # wait 100 + 12 * 50 / 6 = 200 ms, well inside the SLO of 300 ms.
    closed = m(6, 24, queued_requests=12, p95_ms=100, service_time_ms=50, arrival_rate=120)
    assert decide(SLO, closed, {}, 0.0)[0] == 6
