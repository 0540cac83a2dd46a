"""Replica stats and the Ray Serve policy adapters, with fake contexts and an injected clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from autoscale import ReplicaStats, ScalingSettings, autoscaling_config, graph_policy, node_policy
from autoscale.serve_policy import NODE_POLICY, metrics_from_context
from autoscale.stats import (
    ARRIVAL_RATE,
    BATCH_FILL,
    ENGINE_WAITING,
    KV_CACHE_USAGE,
    P95_MS,
    QUEUE_LEN,
    SERVICE_TIME_MS,
    TTFT_P95_MS,
    service_time_s,
)
from graphs import GraphValidationError, compile_graph, parse_graph


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_replica_stats_windows() -> None:
    clock = Clock()
    stats = ReplicaStats(latency_window_s=2.0, rate_window_s=5.0, clock=clock, max_concurrency=1)
    assert stats.snapshot() == {ARRIVAL_RATE: 0.0, QUEUE_LEN: 0.0}
    for i in range(20):  # 20 requests, one after another, each 50 ms
        start = stats.started()
        clock.t += 0.05
        stats.finished(start)
        clock.t += 0.05 if i < 19 else 0.0
    snap = stats.snapshot()
    assert snap[ARRIVAL_RATE] == pytest.approx(20 / 5.0)
    assert snap[P95_MS] == pytest.approx(50.0)
    assert snap[SERVICE_TIME_MS] == pytest.approx(50.0)
    clock.t += 3.0  # past the latency window, inside the rate window
    assert P95_MS not in stats.snapshot() and stats.snapshot()[ARRIVAL_RATE] == 4.0
    clock.t += 10.0
    assert stats.snapshot() == {ARRIVAL_RATE: 0.0, QUEUE_LEN: 0.0}


def test_queue_length_and_batch_fill() -> None:
    clock = Clock()
    stats = ReplicaStats(rate_window_s=5.0, clock=clock)
    first, _ = stats.started(), stats.started()
    stats.batch(8, 32)
    stats.batch(24, 32)
    snap = stats.snapshot()
    assert snap[QUEUE_LEN] == 2.0 and snap[BATCH_FILL] == 0.5
    stats.finished(first)
    clock.t += 6.0
    snap = stats.snapshot()
    assert snap[QUEUE_LEN] == 1.0 and BATCH_FILL not in snap


def _replay(stats: ReplicaStats, clock: Clock, spans: list[tuple[float, float]]) -> None:
    """Requests as (start, end) offsets in s, replayed through ``stats`` in time order."""
    events = sorted(
        [(a, 0, i) for i, (a, _) in enumerate(spans)]
        + [(b, 1, i) for i, (_, b) in enumerate(spans)]
    )
    base, tokens = clock.t, {}
    for t, kind, i in events:
        clock.t = base + t
        if kind == 0:
            tokens[i] = stats.started()
        else:
            stats.finished(tokens[i])


def test_a_node_that_waits_serves_max_ongoing_requests_in_the_time_of_one() -> None:
    # 100 ms whatever the replica holds (a sleep, a remote call): alone, then in pairs, then
    # overlapping by half. By Little's law a replica allowed 2 at once serves 20 req/s.
    spans = [(0.2 * i, 0.2 * i + 0.1) for i in range(5)]
    spans += [(1.0 + 0.2 * (i // 2), 1.1 + 0.2 * (i // 2)) for i in range(6)]
    spans += [(2.0 + 0.05 * i, 2.1 + 0.05 * i) for i in range(10)]
    clock = Clock()
    stats = ReplicaStats(clock=clock, max_concurrency=2)
    _replay(stats, clock, spans)
    assert stats.snapshot()[SERVICE_TIME_MS] == pytest.approx(50.0, rel=0.02)


def test_a_node_that_computes_costs_its_own_time_whatever_it_may_hold() -> None:
    # One core, processor sharing: k requests at once each take k * 50 ms.
    spans = [(0.1 * i, 0.1 * i + 0.05) for i in range(5)]  # alone: 50 ms
    spans += [(1.0 + 0.2 * i, 1.0 + 0.2 * i + 0.1) for i in range(3) for _ in range(2)]  # pairs
    spans += [(2.0 + 0.3 * i, 2.0 + 0.3 * i + 0.15) for i in range(3) for _ in range(3)]
    clock = Clock()
    stats = ReplicaStats(clock=clock, max_concurrency=8)
    _replay(stats, clock, spans)
    assert stats.snapshot()[SERVICE_TIME_MS] == pytest.approx(50.0, rel=0.02)


@pytest.mark.parametrize(
    ("samples", "cap", "expected"),
    [
        ([], 4, None),
        ([(1.0, 0.1)] * 5, 2, 0.05),  # flat: optimistic, 2 fit in the time of one
        ([(1.0, 0.1)] * 5, 32, 0.05),  # ... but never past twice what was seen at once
        ([(1.0, 0.1)] * 5, 1, 0.1),
        ([(1.0, 0.05), (2.0, 0.1), (3.0, 0.15)], 32, 0.05),  # grows with k: one at a time
        ([(1.0, 0.1), (2.0, 0.08)], 2, 0.045),  # faster when fuller: no negative slope
    ],
)
def test_service_time_fits_latency_against_concurrency(
    samples: list[tuple[float, float]], cap: int, expected: float | None
) -> None:
    got = service_time_s(samples, cap)
    assert got == (None if expected is None else pytest.approx(expected))


@dataclass
class Policy:
    policy_kwargs: dict[str, Any]


@dataclass
class Config:
    policy: Policy


@dataclass
class DepId:
    name: str
    app_name: str = "g"

    def __hash__(self) -> int:
        return hash((self.name, self.app_name))


@dataclass
class Ctx:
    config: Config
    target_num_replicas: int
    total_num_requests: float
    total_queued_requests: float = 0.0
    aggregated_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    policy_state: dict[str, Any] = field(default_factory=dict)
    current_time: float = 1000.0


def ctx(settings: ScalingSettings, children: dict[str, float] | None = None, **kw: Any) -> Ctx:
    kwargs = autoscaling_config(settings, children or {})["policy"]["policy_kwargs"]
    return Ctx(config=Config(Policy(kwargs)), **kw)


def test_autoscaling_config_neutralises_ray_delays() -> None:
    cfg = autoscaling_config(ScalingSettings(min_replicas=2, max_replicas=6), {"b": 0.5})
    assert (cfg["min_replicas"], cfg["max_replicas"], cfg["initial_replicas"]) == (2, 6, 2)
    assert cfg["upscale_delay_s"] == cfg["downscale_delay_s"] == 0.0
    assert cfg["policy"]["policy_function"] == NODE_POLICY
    assert cfg["policy"]["policy_kwargs"]["children"] == {"b": 0.5}
    from ray.serve.config import AutoscalingConfig

    AutoscalingConfig(**cfg)  # Ray accepts it


def test_metrics_from_context_combines_replicas() -> None:
    c = ctx(
        ScalingSettings(),
        target_num_replicas=2,
        total_num_requests=7.0,
        total_queued_requests=3.0,
        aggregated_metrics={
            P95_MS: {"r1": 120.0, "r2": 80.0},
            ARRIVAL_RATE: {"r1": 30.0, "r2": 10.0},
            SERVICE_TIME_MS: {"r1": 40.0, "r2": 80.0},
        },
    )
    m = metrics_from_context(c)
    assert (m.current_replicas, m.ongoing_requests, m.queued_requests) == (2, 7.0, 3.0)
    assert m.p95_ms == 120.0 and m.arrival_rate == 40.0
    assert m.service_time_ms == pytest.approx((40 * 30 + 80 * 10) / 40)
    assert m.engine_waiting is None and m.kv_cache_usage is None and m.ttft_p95_ms is None


def test_metrics_from_context_reads_llm_engines() -> None:
    c = ctx(
        ScalingSettings(),
        target_num_replicas=2,
        total_num_requests=4.0,
        aggregated_metrics={
            ENGINE_WAITING: {"r1": 3.0, "r2": 1.0},
            KV_CACHE_USAGE: {"r1": 0.4, "r2": 0.9},
            TTFT_P95_MS: {"r1": 300.0, "r2": 120.0},
        },
    )
    m = metrics_from_context(c)
    assert (m.engine_waiting, m.kv_cache_usage, m.ttft_p95_ms) == (4.0, 0.9, 300.0)


def test_node_policy_scales_up_on_queue() -> None:
    settings = ScalingSettings(target_queue_per_replica=2, max_step=4, max_replicas=10)
    desired, state = node_policy(ctx(settings, target_num_replicas=2, total_num_requests=12.0))
    assert desired == 6  # 12 ongoing / target 2 per replica, within max_step 4 of 2
    assert state["reason"] == "up:load"


def test_graph_policy_holds_upstream_of_a_saturated_node() -> None:
    settings = ScalingSettings(target_queue_per_replica=2, max_replicas=4)
    up = ctx(settings, {"down": 1.0}, target_num_replicas=1, total_num_requests=6.0)
    down = ctx(settings, target_num_replicas=4, total_num_requests=20.0)
    plain = Ctx(config=Config(Policy({})), target_num_replicas=3, total_num_requests=1.0)
    ids = {"up": DepId("up"), "down": DepId("down"), "ingress": DepId("ingress")}
    decisions, states = graph_policy({ids["up"]: up, ids["down"]: down, ids["ingress"]: plain})
    assert decisions[ids["down"]] == 4  # at its max
    assert decisions[ids["up"]] == 1
    assert states[ids["up"]]["reason"] == "hold:downstream_saturated"
    assert decisions[ids["ingress"]] == 3  # not ours: left as it is


GRAPH = {"name": "g", "inputs": [{"name": "x"}], "entry": "m"}


def _graph(node: dict[str, Any]) -> dict[str, Any]:
    base = {
        "name": "m",
        "kind": "model",
        "runtime": "python",
        "model_class": "graphs.examples.passthrough:identity",
    }
    return {**GRAPH, "nodes": [{**base, **node}]}


@pytest.mark.parametrize(
    "other", [{"num_replicas": 2}, {"autoscaling_config": {"max_replicas": 3}}]
)
def test_autoscaling_excludes_other_sizing(other: dict[str, Any]) -> None:
    with pytest.raises(GraphValidationError) as err:
        parse_graph(_graph({"autoscaling": {"max_replicas": 4}, **other}))
    ((path, message),) = err.value.issues
    assert path == "graph.nodes[0]"
    assert message.startswith("set either autoscaling (servegraph's policy) or ")


def test_autoscaling_settings_errors_name_their_path() -> None:
    with pytest.raises(GraphValidationError) as err:
        parse_graph(_graph({"autoscaling": {"min_replicas": 5, "max_replicas": 2}}))
    ((path, message),) = err.value.issues
    assert path == "graph.nodes[0].autoscaling"
    assert message == "min_replicas (5) must be <= max_replicas (2)"
    with pytest.raises(GraphValidationError) as err:
        parse_graph(_graph({"autoscaling": {"slo_p95_ms": -1}}))
    assert err.value.issues[0][0] == "graph.nodes[0].autoscaling.slo_p95_ms"


def test_compiler_gives_the_node_our_policy() -> None:
    app = compile_graph(parse_graph(_graph({"autoscaling": {"max_replicas": 4}})))
    node = app._bound_deployment.init_args[1]["m"]._bound_deployment
    config = node._deployment_config.autoscaling_config
    assert config.max_replicas == 4
    assert config.policy.policy_function == NODE_POLICY


def test_serve_config_args_put_nodes_under_our_policy(digits_artifacts: object) -> None:
    from graphs.builder import build_app

    app = build_app(
        {"graph": "graphs/examples/digits.yaml", "autoscaling": {"mlp": {"max_replicas": 3}}}
    )
    nodes = app._bound_deployment.init_args[1]
    mlp = nodes["mlp"]._bound_deployment._deployment_config.autoscaling_config
    assert mlp.max_replicas == 3 and mlp.policy.policy_function == NODE_POLICY
    assert nodes["logreg"]._bound_deployment._deployment_config.autoscaling_config is None
    with pytest.raises(GraphValidationError) as err:
        build_app({"graph": "graphs/examples/digits.yaml", "autoscaling": {"nope": {}}})
    assert err.value.issues[0][0] == "args.autoscaling.nope"
    with pytest.raises(GraphValidationError) as err:
        build_app(
            {"graph": "graphs/examples/digits.yaml", "autoscaling": {"mlp": {"max_replicas": 0}}}
        )
    assert err.value.issues[0][0].endswith("graph.nodes[3].autoscaling.max_replicas")
