"""autoscale.decide_graph: anticipation, bottleneck first, saturated downstream; topologies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from autoscale import (
    GraphTopology,
    NodeMetrics,
    ScalingSettings,
    decide,
    decide_graph,
    expected_arrival_rates,
    topology_from_spec,
)
from graphs import parse_graph

IDENTITY = "graphs.examples.passthrough:identity"
DEFAULT = ScalingSettings()


def m(current: int, ongoing: float, **kwargs: Any) -> NodeMetrics:
    return NodeMetrics(current_replicas=current, ongoing_requests=ongoing, **kwargs)


def pre(name: str) -> dict[str, Any]:
    return {"name": name, "kind": "preprocess", "function": IDENTITY}


def ab_graph() -> GraphTopology:
    """pre -> router -> {a: 0.7, ens: 0.3}; ens -> {b, c -> post}."""
    spec = parse_graph(
        {
            "name": "g",
            "inputs": [{"name": "x"}],
            "entry": ["pre", "router"],
            "nodes": [
                pre("pre"),
                {
                    "name": "router",
                    "kind": "router",
                    "arms": [{"target": "a", "weight": 0.7}, {"target": "ens", "weight": 0.3}],
                },
                pre("a"),
                {"name": "ens", "kind": "ensemble", "members": ["b", ["c", "post"]]},
                pre("b"),
                pre("c"),
                pre("post"),
            ],
        }
    )
    return topology_from_spec(spec)


# --- topology ----------------------------------------------------------------------------------


def test_topology_from_spec() -> None:
    topo = ab_graph()
    assert topo.nodes == ("pre", "router", "a", "ens", "b", "c", "post")
    assert set(topo.edges) == {
        ("pre", "router", 1.0),
        ("router", "a", 0.7),
        ("router", "ens", 0.3),
        ("ens", "b", 1.0),
        ("ens", "c", 1.0),
        ("c", "post", 1.0),
    }
    assert topo.children("router") == {"a": 0.7, "ens": 0.3}
    assert topo.parents("post") == {"c": 1.0}
    assert topo.descendants("router") == {"a", "ens", "b", "c", "post"}
    assert topo.descendants("post") == frozenset()
    order = topo.order()
    assert order.index("pre") < order.index("router") < order.index("ens") < order.index("c")
    assert order.index("c") < order.index("post")


def test_topology_merges_repeated_edges_and_rejects_bad_ones() -> None:
    topo = GraphTopology(edges=(("r", "x", 0.5), ("r", "x", 0.25), ("r", "y", 0.25)))
    assert topo.nodes == ("r", "x", "y")
    assert topo.children("r") == {"x": 0.75, "y": 0.25}
    assert GraphTopology.from_mapping({"r": {"x": 0.75, "y": 0.25}}) == topo
    with pytest.raises(ValueError, match=r"edge r -> x: share must be >= 0, got -0.1"):
        GraphTopology(edges=(("r", "x", -0.1),))
    with pytest.raises(ValueError, match="a node cannot call itself"):
        GraphTopology(edges=(("r", "r", 1.0),))


def test_expected_rates_follow_router_weights() -> None:
    rates = expected_arrival_rates(ab_graph(), {"pre": m(2, 1, arrival_rate=100.0)})
    assert rates == pytest.approx(
        {"pre": 100, "router": 100, "a": 70, "ens": 30, "b": 30, "c": 30, "post": 30}
    )


def test_own_rate_wins_when_higher() -> None:
    topo = GraphTopology.from_mapping({"r": {"x": 0.5}})
    rates = expected_arrival_rates(
        topo, {"r": m(1, 0, arrival_rate=10), "x": m(1, 0, arrival_rate=8)}
    )
    assert rates == {"r": 10, "x": 8}


# --- anticipation ------------------------------------------------------------------------------


def test_downstream_is_sized_from_upstream_rate_and_arm_weights() -> None:
    # 100 req/s into the router; arms 0.7 / 0.3; 50 ms per request; 75% target utilisation:
    # a needs ceil(70 * 0.05 / 0.75) = ceil(4.67) = 5, ens/b/c ceil(30 * 0.05 / 0.75) = 2,
    # post (20 ms) ceil(30 * 0.02 / 0.75) = 1. None of them has seen the traffic yet.
    idle = {"arrival_rate": 0.0, "service_time_ms": 50.0}
    metrics = {
        "pre": m(2, 1, arrival_rate=100, service_time_ms=5),
        "router": m(2, 1, arrival_rate=100, service_time_ms=5),
        "a": m(1, 0, **idle),
        "ens": m(1, 0, **idle),
        "b": m(1, 0, **idle),
        "c": m(1, 0, **idle),
        "post": m(1, 0, arrival_rate=0.0, service_time_ms=20.0),
    }
    decisions, state = decide_graph({}, metrics, ab_graph(), {}, now=10.0)
    assert decisions == {"pre": 2, "router": 2, "a": 5, "ens": 2, "b": 2, "c": 2, "post": 1}
    assert state["a"] == {"last_change_s": 10.0, "comfortable_since_s": None, "reason": "up:rate"}
    assert state["post"]["reason"] == "hold:min_replicas"
    assert json.loads(json.dumps(state)) == state
    # On its own, `a` sees no traffic and would not move.
    assert decide(DEFAULT, metrics["a"], {}, 10.0)[0] == 1


def test_anticipation_respects_step_and_max() -> None:
    topo = GraphTopology.from_mapping({"r": {"x": 1.0}})
    metrics = {"r": m(4, 2, arrival_rate=400), "x": m(2, 0, service_time_ms=50)}
    # x needs ceil(400 * 0.05 / 0.75) = 27: capped at 2 + 4 now, at max_replicas 5 with a cap.
    assert decide_graph({}, metrics, topo, {}, 0.0)[0]["x"] == 6
    capped = {"x": ScalingSettings(max_replicas=5)}
    assert decide_graph(capped, metrics, topo, {}, 0.0)[0]["x"] == 5


def test_anticipated_need_blocks_scaling_down() -> None:
    topo = GraphTopology.from_mapping({"r": {"x": 1.0}})
    metrics = {"r": m(2, 1, arrival_rate=100), "x": m(8, 0, arrival_rate=0, service_time_ms=30)}
    comfortable_long = {"x": {"comfortable_since_s": 0.0}}
    # Alone, x is idle and drops by max_step to 4. The 100 req/s of 30 ms coming at it keep
    # down steps at utilisation 0.75 * 0.8 or less: ceil(3 / 0.6) = 5.
    assert decide(DEFAULT, metrics["x"], comfortable_long["x"], 60.0)[0] == 4
    assert decide_graph({}, metrics, topo, comfortable_long, 60.0)[0]["x"] == 5


# --- bottleneck first with a shared budget -----------------------------------------------------


def three_nodes() -> tuple[GraphTopology, dict[str, NodeMetrics]]:
    topo = GraphTopology(nodes=("x", "y", "z"))
    # x: 12 on 2 (ratio 3) wants 6; y: 8 on 2 (ratio 2, requests waiting) wants 4; z: 2 on 2
    # holds.
    return topo, {"x": m(2, 12), "y": m(2, 8, queued_requests=4), "z": m(2, 2)}


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (None, {"x": 6, "y": 4, "z": 2}),
        (12, {"x": 6, "y": 4, "z": 2}),
        (11, {"x": 6, "y": 3, "z": 2}),
        (10, {"x": 6, "y": 2, "z": 2}),
        (8, {"x": 4, "y": 2, "z": 2}),
        (6, {"x": 2, "y": 2, "z": 2}),
    ],
)
def test_budget_goes_to_the_bottleneck_first(budget: int | None, expected: dict[str, int]) -> None:
    topo, metrics = three_nodes()
    decisions, state = decide_graph({}, metrics, topo, {}, 0.0, max_total_replicas=budget)
    assert decisions == expected
    if expected["y"] == 2:
        assert state["y"]["reason"] == "hold:budget"
        assert state["y"]["last_change_s"] is None


def test_latency_ratio_ranks_too() -> None:
    topo, metrics = three_nodes()
    slo = {"y": ScalingSettings(slo_p95_ms=100)}
    metrics["y"] = m(2, 8, queued_requests=4, p95_ms=400)  # latency ratio 4 beats x's load 3
    decisions, _ = decide_graph(slo, metrics, topo, {}, 0.0, max_total_replicas=10)
    assert decisions == {"x": 2, "y": 6, "z": 2}


def test_scale_downs_free_budget_for_the_bottleneck() -> None:
    topo, metrics = three_nodes()
    metrics["z"] = m(6, 0)
    state = {"z": {"comfortable_since_s": 0.0}}
    decisions, _ = decide_graph({}, metrics, topo, state, 30.0, max_total_replicas=10)
    assert decisions == {"x": 6, "y": 2, "z": 2}


def test_budget_never_breaks_min_replicas() -> None:
    topo, metrics = three_nodes()
    settings = {"z": ScalingSettings(min_replicas=3)}
    decisions, _ = decide_graph(settings, metrics, topo, {}, 0.0, max_total_replicas=6)
    assert decisions == {"x": 2, "y": 2, "z": 3}


# --- saturated downstream ----------------------------------------------------------------------


CHAIN = GraphTopology.from_mapping({"pre": {"router": 1.0}, "router": {"model": 1.0}})


def test_upstream_held_while_downstream_is_at_max() -> None:
    settings = {"model": ScalingSettings(max_replicas=4)}
    metrics = {"pre": m(2, 12), "router": m(2, 2), "model": m(4, 20)}
    decisions, state = decide_graph(settings, metrics, CHAIN, {}, 0.0)
    assert decisions == {"pre": 2, "router": 2, "model": 4}
    assert state["pre"]["reason"] == "hold:downstream_saturated"
    assert state["model"]["reason"] == "hold:max_replicas"
    assert state["pre"]["last_change_s"] is None


def test_upstream_waits_while_downstream_scales_up() -> None:
    metrics = {"pre": m(2, 12), "router": m(2, 2), "model": m(2, 12)}
    decisions, state = decide_graph({}, metrics, CHAIN, {}, 0.0)
    assert decisions == {"pre": 2, "router": 2, "model": 6}
    # Next round the model is under its target again, and pre gets its step.
    metrics = {"pre": m(2, 12), "router": m(2, 2), "model": m(6, 6)}
    decisions, state = decide_graph({}, metrics, CHAIN, state, 1.0)
    assert decisions == {"pre": 6, "router": 2, "model": 6}


def test_anticipated_growth_downstream_does_not_hold_upstream() -> None:
    # model grows because of the rate coming at it, not because it is over target.
    topo = GraphTopology.from_mapping({"pre": {"model": 1.0}})
    metrics = {
        "pre": m(2, 12, arrival_rate=100, service_time_ms=5),
        "model": m(1, 0, arrival_rate=0, service_time_ms=50),
    }
    decisions, _ = decide_graph({}, metrics, topo, {}, 0.0)
    assert decisions == {"pre": 6, "model": 5}


def test_upstream_may_still_scale_down() -> None:
    settings = {"model": ScalingSettings(max_replicas=4)}
    metrics = {"pre": m(6, 0), "router": m(2, 2), "model": m(4, 20)}
    state = {"pre": {"comfortable_since_s": 0.0}}
    assert decide_graph(settings, metrics, CHAIN, state, 30.0)[0]["pre"] == 2


def test_nodes_outside_the_topology_are_decided_alone() -> None:
    decisions, state = decide_graph({}, {"ingress": m(1, 6)}, CHAIN, {}, 0.0)
    assert decisions == {"ingress": 3}
    assert state["ingress"]["reason"] == "up:load"


def test_negative_budget_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_total_replicas must be >= 0, got -1"):
        decide_graph({}, {}, CHAIN, {}, 0.0, max_total_replicas=-1)


def test_upstream_held_while_a_queue_its_slo_lets_be_waits_downstream() -> None:
    # The model is not scaled (its callers' latency, 100 + 5 x 50 / 4 = 163 ms, is well inside
    # its SLO) but 5 requests wait for its replicas: it runs at capacity, so pre, over its own
    # target, is held.
    settings = {"model": ScalingSettings(slo_p95_ms=400)}
    slow = m(4, 13, queued_requests=5, p95_ms=100, service_time_ms=50, arrival_rate=80)
    metrics = {"pre": m(1, 5, queued_requests=1), "router": m(1, 1), "model": slow}
    decisions, state = decide_graph(settings, metrics, CHAIN, {}, 0.0)
    assert decisions == {"pre": 1, "router": 1, "model": 4}
    assert state["pre"]["reason"] == "hold:downstream_saturated"


def test_a_caller_that_grows_releases_its_queue_downstream_in_the_same_round() -> None:
    # slow (100 ms, 2 slots: 20 req/s a replica) has a queue and goes from 2 to 4 replicas;
    # its child a sees 16 req/s now and is fine with one replica at that rate, but slow will
    # pass on 0.8 x 4 x 20 x 0.75 = 48 req/s once its replicas serve: a is sized for that
    # before its own queue builds.
    topo = GraphTopology.from_mapping({"slow": {"a": 0.8}})
    settings = {"slow": ScalingSettings(slo_p95_ms=400)}
    metrics = {
        "slow": m(2, 24, queued_requests=20, p95_ms=100, service_time_ms=50, arrival_rate=20),
        "a": m(1, 1, p95_ms=50, service_time_ms=25, arrival_rate=16),
    }
    decisions, state = decide_graph(settings, metrics, topo, {}, 0.0)
    assert decisions["slow"] == 4 and state["slow"]["reason"] == "up:latency"
    # a: ceil(48 x 0.025 / 0.75) = 2 replicas, by rate (16 req/s alone: 1).
    assert (decisions["a"], state["a"]["reason"]) == (2, "up:rate")
    assert decide_graph(settings, {**metrics, "slow": m(2, 2, arrival_rate=20)}, topo, {}, 0.0)[
        0
    ] == {"slow": 2, "a": 1}
