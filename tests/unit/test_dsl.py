"""The Python DSL builds the same spec as YAML, and reports problems with config paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import ray
from ray.serve.deployment import Application

from graphs import (
    Chain,
    Graph,
    GraphSpec,
    GraphValidationError,
    NodeRef,
    PreprocessNode,
    load_graph,
    parse_graph,
    tensor,
)

IDENTITY = "graphs.examples.passthrough:identity"
CLASS = "collections:OrderedDict"

YAML = f"""
name: demo
description: a demo graph
max_body_bytes: 1024
inputs:
  - {{name: x, datatype: FP32, shape: [-1, 4]}}
outputs:
  - {{name: y, datatype: INT64, shape: [-1]}}
entry: [scale, split]
nodes:
  - {{name: scale, kind: preprocess, function: "{IDENTITY}", num_cpus: 0.5}}
  - name: m1
    kind: model
    runtime: python
    model_class: "{CLASS}"
    batching: {{max_batch_size: 8, max_wait_ms: 1}}
  - {{name: m2, kind: model, runtime: python, model_class: "{CLASS}", num_gpus: 0.25}}
  - {{name: post, kind: preprocess, function: "{IDENTITY}"}}
  - name: both
    kind: ensemble
    members: [m1, [m2, post]]
    combiner: vote
    weights: [2, 1]
    quorum: 1
  - name: split
    kind: router
    seed: 7
    arms:
      - {{target: m1, weight: 0.3}}
      - {{target: both, weight: 0.5}}
      - {{target: [m2, post], weight: 0.2}}
"""


def demo_graph() -> tuple[Graph, dict[str, Any]]:
    """The YAML graph above, declared with the DSL; also returns the node refs."""
    g = Graph(
        "demo",
        inputs=[tensor("x", "FP32", [-1, 4])],
        outputs=[{"name": "y", "datatype": "INT64", "shape": [-1]}],
        description="a demo graph",
        max_body_bytes=1024,
    )
    scale = g.preprocess(IDENTITY, name="scale", num_cpus=0.5)
    m1 = g.model(
        "m1", runtime="python", model_class=CLASS, batching={"max_batch_size": 8, "max_wait_ms": 1}
    )
    m2 = g.model("m2", runtime="python", model_class=CLASS, num_gpus=0.25)
    post = g.preprocess(IDENTITY, name="post")
    both = g.ensemble("both", [m1, m2 >> post], combiner="vote", weights=[2, 1], quorum=1)
    split = g.router("split", {m1: 0.3, both: 0.5, m2 >> post: 0.2}, seed=7)
    g.entry = scale >> split
    refs = {"scale": scale, "m1": m1, "m2": m2, "post": post, "both": both, "split": split}
    return g, refs


def test_dsl_builds_the_same_spec_as_yaml(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(YAML)
    from_yaml = load_graph(path)
    g, _ = demo_graph()
    from_dsl = g.spec()
    assert from_dsl.model_dump() == from_yaml.model_dump()
    assert from_dsl == from_yaml
    # And the same as the plain mapping a Serve config would carry.
    import yaml

    assert parse_graph(yaml.safe_load(YAML)).model_dump() == from_dsl.model_dump()
    # Spot-check what the DSL turned into spec values.
    assert from_dsl.entry == ["scale", "split"]
    split = from_dsl.node("split")
    assert [a.model_dump(exclude_none=True) for a in split.arms] == [  # type: ignore[union-attr]
        {"target": "m1", "weight": 0.3},
        {"target": "both", "weight": 0.5},
        {"target": ["m2", "post"], "weight": 0.2},
    ]
    assert from_dsl.node("both").members == ["m1", ["m2", "post"]]  # type: ignore[union-attr]


def test_router_arms_as_pairs() -> None:
    g = Graph("pairs", inputs=[tensor("x")])
    a = g.preprocess(IDENTITY, name="a")
    b = g.preprocess(IDENTITY, name="b")
    g.router("r", [(a, 0.5), ("b", 0.25), (["a", "b"], 0.25)])
    g.entry = "r"
    arms = g.spec().node("r").arms  # type: ignore[union-attr]
    assert [(arm.target, arm.weight) for arm in arms] == [
        ("a", 0.5),
        ("b", 0.25),
        (["a", "b"], 0.25),
    ]
    assert isinstance(b, NodeRef)


def test_preprocess_bare_decorator_takes_the_function_name() -> None:
    g = Graph("deco", inputs=[tensor("x")])

    @g.preprocess
    def double(payload: dict[str, Any]) -> dict[str, Any]:
        return {"x": payload["x"] * 2}

    assert isinstance(double, NodeRef)
    assert double.name == "double"
    g.entry = double
    node = g.spec().node("double")
    assert isinstance(node, PreprocessNode)
    assert node.function({"x": 3}) == {"x": 6}


def test_preprocess_decorator_with_name_and_options() -> None:
    g = Graph("deco", inputs=[tensor("x")])

    @g.preprocess(name="triple", num_cpus=2)
    def whatever(payload: dict[str, Any]) -> dict[str, Any]:
        return {"x": payload["x"] * 3}

    assert repr(whatever) == "NodeRef('triple')"
    g.entry = whatever
    node = g.spec().node("triple")
    assert isinstance(node, PreprocessNode)
    assert node.num_cpus == 2
    assert node.function({"x": 2}) == {"x": 6}


def test_preprocess_import_path_needs_a_name() -> None:
    g = Graph("deco", inputs=[tensor("x")])
    with pytest.raises(ValueError, match=r"give the node a name=\.\.\."):
        g.preprocess(IDENTITY)


def test_chains() -> None:
    a, b, c = NodeRef("a"), NodeRef("b"), NodeRef("c")
    ab = a >> b
    assert isinstance(ab, Chain)
    assert ab.names == ["a", "b"]
    assert (ab >> c).names == ["a", "b", "c"]
    assert (a >> (b >> c)).names == ["a", "b", "c"]
    assert (ab >> (b >> c)).names == ["a", "b", "b", "c"]
    assert ab.names == ["a", "b"]  # chaining builds new chains, it does not extend old ones


def test_entry_forms() -> None:
    g = Graph("forms", inputs=[tensor("x")])
    a = g.preprocess(IDENTITY, name="a")
    g.preprocess(IDENTITY, name="b")
    for entry, expected in [
        (a >> NodeRef("b"), ["a", "b"]),
        (["a", "b"], ["a", "b"]),
        (("a", "b"), ["a", "b"]),
    ]:
        g.entry = entry
        assert g.spec().entry == expected
    g.entry = a
    with pytest.raises(GraphValidationError) as info:
        g.spec()
    assert info.value.issues[0][0] == "graph.nodes[1]"
    assert "node 'b' is not reachable from entry" in info.value.issues[0][1]


def test_build_returns_an_application_without_starting_ray() -> None:
    g, _ = demo_graph()
    app = g.build()
    assert isinstance(app, Application)
    assert not ray.is_initialized()


def test_build_validates() -> None:
    g = Graph("bad", inputs=[tensor("x")])
    g.preprocess(IDENTITY, name="a")
    g.entry = "zz"
    with pytest.raises(GraphValidationError) as info:
        g.build()
    assert info.value.issues == [("graph.entry", "unknown node 'zz' (known nodes: a)")]


def test_reprs_show_what_they_were_built_from() -> None:
    g, refs = demo_graph()
    assert repr(g) == (
        "Graph('demo', nodes=[scale, m1, m2, post, both, split], entry=scale >> split)"
    )
    assert repr(refs["m1"]) == "NodeRef('m1')"
    assert repr(refs["m2"] >> refs["post"]) == "m2 >> post"
    empty = Graph("empty", inputs=[tensor("x")])
    assert repr(empty) == "Graph('empty', nodes=[], entry=None)"

    small = Graph("small", inputs=[tensor("x")])
    small.preprocess(IDENTITY, name="a")
    small.entry = "a"
    assert repr(small.spec()) == (
        "GraphSpec(name='small', inputs=[{'name': 'x'}], "
        f"nodes=[{{'name': 'a', 'kind': 'preprocess', 'function': '{IDENTITY}'}}], entry='a')"
    )
    assert repr(tensor("t", "INT64", [2])) == "TensorSpec(name='t', datatype='INT64', shape=[2])"


def test_spec_is_frozen() -> None:
    g, _ = demo_graph()
    spec = g.spec()
    assert isinstance(spec, GraphSpec)
    with pytest.raises(ValueError, match="frozen"):
        spec.name = "other"  # type: ignore[misc]


# --- DSL errors come through as GraphValidationError with paths -------------------------------


def test_dsl_unknown_arm_target() -> None:
    g = Graph("bad", inputs=[tensor("x")])
    a = g.preprocess(IDENTITY, name="a")
    g.router("r", {a: 0.5, NodeRef("ghost"): 0.5})
    g.entry = "r"
    with pytest.raises(GraphValidationError) as info:
        g.spec()
    assert info.value.issues == [
        ("graph.nodes[1].arms[1].target", "unknown node 'ghost' (known nodes: a, r)")
    ]


def test_dsl_node_rule() -> None:
    g = Graph("bad", inputs=[tensor("x")])
    g.model("m", runtime="onnx")
    g.entry = "m"
    with pytest.raises(GraphValidationError) as info:
        g.spec()
    assert info.value.issues == [
        ("graph.nodes[0]", "runtime 'onnx' needs model_path (an .onnx file)")
    ]


def test_dsl_unknown_graph_option() -> None:
    g = Graph("bad", inputs=[tensor("x")], bogus=1)
    g.preprocess(IDENTITY, name="a")
    g.entry = "a"
    with pytest.raises(GraphValidationError) as info:
        g.spec()
    assert info.value.issues == [("graph.bogus", "unknown key; remove it or check its spelling")]


def test_dsl_unknown_node_option() -> None:
    g = Graph("bad", inputs=[tensor("x")])
    g.preprocess(IDENTITY, name="a", num_cpu=1)
    g.entry = "a"
    with pytest.raises(GraphValidationError) as info:
        g.spec()
    assert info.value.issues == [
        ("graph.nodes[0].num_cpu", "unknown key; remove it or check its spelling")
    ]


def test_dsl_missing_entry() -> None:
    g = Graph("bad", inputs=[tensor("x")])
    g.preprocess(IDENTITY, name="a")
    with pytest.raises(GraphValidationError) as info:
        g.spec()
    assert info.value.issues == [("graph.entry", "required key is missing")]


def test_dsl_lambda_needs_a_valid_name() -> None:
    g = Graph("bad", inputs=[tensor("x")])
    ref = g.preprocess(lambda payload: payload)
    g.entry = ref
    with pytest.raises(GraphValidationError) as info:
        g.spec()
    [(where, message)] = info.value.issues
    assert where == "graph.nodes[0].name"
    assert message.startswith("String should match pattern")
    assert message.endswith("got '<lambda>'")


def test_dsl_bad_input_mapping() -> None:
    g = Graph("bad", inputs=[{"name": "x", "shape": [0]}])
    g.preprocess(IDENTITY, name="a")
    g.entry = "a"
    with pytest.raises(GraphValidationError) as info:
        g.spec()
    assert info.value.issues == [
        ("graph.inputs[0].shape", "dimensions must be positive or -1 (variable), got [0]")
    ]


def test_dsl_weights_must_sum_to_one() -> None:
    g = Graph("bad", inputs=[tensor("x")])
    a = g.preprocess(IDENTITY, name="a")
    b = g.preprocess(IDENTITY, name="b")
    g.router("r", {a: 0.6, b: 0.3})
    g.entry = "r"
    with pytest.raises(GraphValidationError) as info:
        g.spec()
    assert info.value.issues == [("graph.nodes[2].arms", "weights must sum to 1, got 0.9")]
