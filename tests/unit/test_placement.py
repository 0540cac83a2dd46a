"""Node fusion (graphs.placement, graphs.replica.FusedNode): which deployment each node runs in,
and fused nodes called in-process through the calls a handle takes, without Ray."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from autoscale.topology import topology_from_spec
from graphs import GraphValidationError, load_graph, parse_graph
from graphs.compiler import deployment_children
from graphs.placement import plan_placement
from graphs.replica import FusedNode, HandleRunner, NodeCore
from graphs.validate import PACKAGE_ROOT
from nodes.errors import DeadlineExceededError, NodeError
from nodes.resilience import DEADLINE

IDENTITY = "graphs.examples.passthrough:identity"
PY_MODEL = "tests.integration.helpers:Echo"


def pre(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "kind": "preprocess", "function": IDENTITY, **fields}


def model(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "kind": "model", "runtime": "python", "model_class": PY_MODEL, **fields}


def graph(nodes: list[dict[str, Any]], entry: Any, **fields: Any) -> Any:
    data = {"name": "g", "inputs": [{"name": "x"}], "entry": entry, "nodes": nodes, **fields}
    return parse_graph(data, check_files=False)


def router(name: str, arms: list[str], **fields: Any) -> dict[str, Any]:
    return {"name": name, "kind": "router", "arms": [{"target": a} for a in arms], **fields}


def test_digits_default_fuses_the_cheap_nodes_into_the_ingress() -> None:
    spec = load_graph(os.path.join(PACKAGE_ROOT, "graphs", "examples", "digits.yaml"))
    placement = plan_placement(spec)
    assert placement.deployments() == ["logreg", "mlp"]
    assert placement.hosted_in("ingress") == ["scale", "split", "both"]
    assert "model nodes keep a deployment of their own" in placement.reasons["mlp"]


def test_fusion_none_and_all() -> None:
    nodes = [
        pre("p"),
        router("r", ["m", "gpu", "big"]),
        model("m"),
        model("gpu", num_gpus=0.5),
        model("big", num_replicas=2),
    ]
    none = plan_placement(graph(nodes, ["p", "r"], fusion="none"))
    assert none.deployments() == ["p", "r", "m", "gpu", "big"]
    assert none.reasons["p"] == "own deployment (fusion: none)"
    every = plan_placement(graph(nodes, ["p", "r"], fusion="all"))
    assert every.hosted_in("ingress") == ["p", "r", "m"]
    # Never fused silently: the build says why each stayed apart.
    assert every.reasons["gpu"] == "own deployment (sets num_gpus of its own)"
    assert every.reasons["big"] == "own deployment (sets num_replicas of its own)"


def test_a_node_fuse_setting_overrides_the_graph() -> None:
    spec = graph([pre("p", fuse=False), pre("q"), model("m", fuse=True)], ["p", "q", "m"])
    placement = plan_placement(spec)
    assert placement.deployments() == ["p"]
    assert placement.hosted_in("ingress") == ["q", "m"]
    assert placement.reasons["m"] == "fused into ingress (fuse: true)"


def test_deployment_options_of_its_own_keep_a_cheap_node_apart() -> None:
    spec = graph(
        [pre("p", num_cpus=0.5), router("r", ["m"], max_ongoing_requests=8), model("m")], ["p", "r"]
    )
    placement = plan_placement(spec)
    assert placement.deployments() == ["p", "r", "m"]
    assert placement.reasons["r"] == "own deployment (sets max_ongoing_requests of its own)"


def test_fuse_true_on_a_gpu_node_is_refused_naming_the_field() -> None:
    with pytest.raises(GraphValidationError) as info:
        graph([model("m", num_gpus=0.25, fuse=True)], "m")
    ((path, message),) = info.value.issues
    assert path == "graph.nodes[0].fuse"
    assert "num_gpus" in message and "drop fuse: true" in message


def test_a_node_called_from_two_deployments_stays_one_instance() -> None:
    # 'p' is on the entry chain (ingress) and a member of an ensemble with replicas of its own.
    nodes = [
        pre("p"),
        {"name": "ens", "kind": "ensemble", "members": ["p", "m"], "num_replicas": 2},
        model("m"),
    ]
    placement = plan_placement(graph(nodes, ["p", "ens"]))
    assert placement.host["p"] == "p"
    assert "called from 2 deployments (ens, ingress)" in placement.reasons["p"]
    with pytest.raises(GraphValidationError) as info:
        graph([{**nodes[0], "fuse": True}, *nodes[1:]], ["p", "ens"])
    assert info.value.issues[0][0] == "graph.nodes[0].fuse"


def test_a_cheap_node_called_by_a_deployed_node_runs_in_that_deployment() -> None:
    nodes = [
        {"name": "ens", "kind": "ensemble", "members": ["r", "m"], "autoscaling": {}},
        router("r", ["a", "b"]),
        model("a"),
        model("b"),
        model("m"),
    ]
    spec = graph(nodes, "ens")
    placement = plan_placement(spec)
    assert placement.hosted_in("ens") == ["r"] and placement.hosted_in("ingress") == []
    # The autoscaled ensemble's children, looked through its fused router.
    children = deployment_children(topology_from_spec(spec), placement, "ens")
    assert children == {"a": 0.5, "b": 0.5, "m": 1.0}


# --- fused nodes in-process ---------------------------------------------------------------


def _fused(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    spec = graph(nodes, [n["name"] for n in nodes], fusion="all")
    table: dict[str, Any] = {}
    for node in spec.nodes:
        table[node.name] = FusedNode(NodeCore(node, HandleRunner(table)), "ingress")
    return table


def test_a_fused_chain_is_served_in_process_and_names_every_node() -> None:
    table = _fused([pre("p"), pre("q")])
    ctx = {"request_id": "r1", "headers": {}}
    out, served, _ = asyncio.run(HandleRunner(table).call(["p", "q"], {"x": 1}, ctx))
    assert out == {"x": 1} and served == ["p", "q"]
    assert asyncio.run(table["p"].stats.remote()) == {}


def test_a_failing_fused_node_answers_a_public_error_naming_it() -> None:
    table = _fused([pre("p", function="tests.unit.test_placement:boom")])
    with pytest.raises(NodeError) as info:
        asyncio.run(table["p"].remote({"x": 1}, {"request_id": "r2", "headers": {}}))
    assert info.value.node == "p" and "secret" not in str(info.value)


def test_a_call_past_its_deadline_is_refused_unstarted_and_counted_as_a_timeout() -> None:
    table = _fused([pre("p", function="tests.unit.test_placement:boom")])
    counted: list[str] = []
    table["p"].core.metrics.refused = counted.append
    ctx = {"request_id": "r3", "headers": {}, DEADLINE: 1.0}  # long past
    with pytest.raises(DeadlineExceededError) as info:
        asyncio.run(table["p"].remote({"x": 1}, ctx))
    assert info.value.node == "p" and counted == ["timeout"]


def boom(payload: Any) -> Any:
    raise RuntimeError("secret internals")


def test_a_fused_stream_closed_early_closes_the_node_stream() -> None:
    table = _fused([pre("p")])

    async def first_item() -> Any:
        items = HandleRunner(table).stream(["p"], {"x": 1}, {"request_id": "r3", "headers": {}})
        async for item in items:
            await items.aclose()
            return item

    assert asyncio.run(first_item()) is not None
