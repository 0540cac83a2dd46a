"""Build-time validation: every invalid graph names its config path and the rule it breaks."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import ray
from ray.serve.deployment import Application

import graphs
from graphs import GraphSpec, GraphValidationError, ModelNode, build_app, load_graph, parse_graph
from graphs.validate import PACKAGE_ROOT, format_loc

IDENTITY = "graphs.examples.passthrough:identity"
DIGITS_YAML = os.path.join(PACKAGE_ROOT, "graphs", "examples", "digits.yaml")


def base() -> dict[str, Any]:
    """The smallest valid graph: one preprocess node as entry."""
    return {
        "name": "g",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
        "entry": "a",
        "nodes": [{"name": "a", "kind": "preprocess", "function": IDENTITY}],
    }


def pre(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "kind": "preprocess", "function": IDENTITY, **fields}


def issues_of(data: Any, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(GraphValidationError) as info:
        parse_graph(data, **kwargs)
    return info.value.issues


# --- invalid graphs, one rule each -------------------------------------------------------------


def _duplicate(d: dict[str, Any]) -> None:
    d["nodes"].append(pre("a"))


def _ingress_name(d: dict[str, Any]) -> None:
    d["nodes"].append(pre("ingress"))
    d["entry"] = ["a", "ingress"]


def _unknown_entry(d: dict[str, Any]) -> None:
    d["entry"] = ["a", "zz"]


def _unknown_arm(d: dict[str, Any]) -> None:
    d["entry"] = "r"
    d["nodes"].append(
        {
            "name": "r",
            "kind": "router",
            "arms": [{"target": "a", "weight": 0.5}, {"target": ["a", "nope"], "weight": 0.5}],
        }
    )


def _unknown_member(d: dict[str, Any]) -> None:
    d["entry"] = "e"
    d["nodes"].append({"name": "e", "kind": "ensemble", "members": ["a", "ghost"]})


def _cycle(d: dict[str, Any]) -> None:
    d["entry"] = "r"
    d["nodes"] += [
        {
            "name": "r",
            "kind": "router",
            "arms": [{"target": "a", "weight": 0.5}, {"target": "e", "weight": 0.5}],
        },
        {"name": "e", "kind": "ensemble", "members": ["a", "r"]},
    ]


def _unreachable(d: dict[str, Any]) -> None:
    d["nodes"].append(pre("b"))


def _weights_sum(d: dict[str, Any]) -> None:
    d["entry"] = "r"
    d["nodes"].append(
        {
            "name": "r",
            "kind": "router",
            "arms": [{"target": "a", "weight": 0.6}, {"target": "a", "weight": 0.3}],
        }
    )


def _router(**fields: Any) -> Callable[[dict[str, Any]], None]:
    """A mutator adding router ``r`` (arms a and b unless given) as the entry."""

    def mutate(d: dict[str, Any]) -> None:
        d["entry"] = "r"
        d["nodes"].append(pre("b"))
        node = {"name": "r", "kind": "router", "arms": [{"target": "a"}, {"target": "b"}]}
        d["nodes"].append({**node, **fields})

    return mutate


def _negative_weight(d: dict[str, Any]) -> None:
    d["entry"] = "r"
    d["nodes"].append(
        {
            "name": "r",
            "kind": "router",
            "arms": [{"target": "a", "weight": 1.1}, {"target": "a", "weight": -0.1}],
        }
    )


def _gpus_fraction(d: dict[str, Any]) -> None:
    d["nodes"][0]["num_gpus"] = 1.5


def _gpus_negative(d: dict[str, Any]) -> None:
    d["nodes"][0]["num_gpus"] = -1


def _missing_file(d: dict[str, Any]) -> None:
    d["entry"] = "m"
    d["nodes"] = [
        {"name": "m", "kind": "model", "runtime": "onnx", "model_path": "/nonexistent/m.onnx"}
    ]


def _missing_module(d: dict[str, Any]) -> None:
    d["nodes"][0]["function"] = "no_such_module_xyz:fn"


def _missing_attr(d: dict[str, Any]) -> None:
    d["nodes"][0]["function"] = "graphs.examples.passthrough:nope"


def _not_import_path(d: dict[str, Any]) -> None:
    d["nodes"][0]["function"] = "json"


def _not_callable(d: dict[str, Any]) -> None:
    d["nodes"][0]["function"] = "graphs.spec:NAME_PATTERN"


def _extra_graph_key(d: dict[str, Any]) -> None:
    d["bogus"] = 1


def _extra_node_key(d: dict[str, Any]) -> None:
    d["nodes"][0]["bogus"] = 1


def _wrong_type(d: dict[str, Any]) -> None:
    d["nodes"][0]["num_cpus"] = "lots"


def _unknown_kind(d: dict[str, Any]) -> None:
    d["nodes"][0]["kind"] = "gizmo"


def _missing_kind(d: dict[str, Any]) -> None:
    del d["nodes"][0]["kind"]


def _onnx_no_path(d: dict[str, Any]) -> None:
    d["entry"] = "m"
    d["nodes"] = [{"name": "m", "kind": "model", "runtime": "onnx"}]


def _python_no_class(d: dict[str, Any]) -> None:
    d["entry"] = "m"
    d["nodes"] = [{"name": "m", "kind": "model", "runtime": "python"}]


def _quorum(d: dict[str, Any]) -> None:
    d["entry"] = "e"
    d["nodes"].append({"name": "e", "kind": "ensemble", "members": ["a", "a"], "quorum": 3})


def _weights_length(d: dict[str, Any]) -> None:
    d["entry"] = "e"
    d["nodes"].append({"name": "e", "kind": "ensemble", "members": ["a", "a"], "weights": [1.0]})


def _weighted_mean_no_weights(d: dict[str, Any]) -> None:
    d["entry"] = "e"
    d["nodes"].append(
        {"name": "e", "kind": "ensemble", "members": ["a", "a"], "combiner": "weighted_mean"}
    )


def _unknown_combiner(d: dict[str, Any]) -> None:
    d["entry"] = "e"
    d["nodes"].append(
        {"name": "e", "kind": "ensemble", "members": ["a", "a"], "combiner": "median"}
    )


def _autoscaling(d: dict[str, Any]) -> None:
    d["nodes"][0]["autoscaling_config"] = {"min_replicas": 5, "max_replicas": 2}


def _ingress_autoscaling(d: dict[str, Any]) -> None:
    d["ingress"] = {"autoscaling_config": {"min_replicas": 1, "target_ongoing_requests": "x"}}


def _zero_dim(d: dict[str, Any]) -> None:
    d["inputs"][0]["shape"] = [-1, 0]


def _datatype(d: dict[str, Any]) -> None:
    d["inputs"][0]["datatype"] = "FP8"


def _graph_name(d: dict[str, Any]) -> None:
    d["name"] = "bad name"


def _no_entry(d: dict[str, Any]) -> None:
    del d["entry"]


def _no_arms(d: dict[str, Any]) -> None:
    d["entry"] = "r"
    d["nodes"].append({"name": "r", "kind": "router", "arms": []})


INVALID: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    (
        "duplicate-name",
        _duplicate,
        "graph.nodes[1].name",
        "duplicate node name 'a' (also nodes[0])",
    ),
    ("node-named-ingress", _ingress_name, "graph.nodes[1].name", "'ingress' is the graph's HTTP"),
    ("unknown-entry", _unknown_entry, "graph.entry", "unknown node 'zz' (known nodes: a)"),
    (
        "unknown-arm-target",
        _unknown_arm,
        "graph.nodes[1].arms[1].target",
        "unknown node 'nope' (known nodes: a, r)",
    ),
    (
        "unknown-member",
        _unknown_member,
        "graph.nodes[1].members[1]",
        "unknown node 'ghost' (known nodes: a, e)",
    ),
    ("call-cycle", _cycle, "graph.nodes[1]", "call cycle: r -> e -> r"),
    ("unreachable", _unreachable, "graph.nodes[1]", "node 'b' is not reachable from entry"),
    ("weights-sum", _weights_sum, "graph.nodes[1].arms", "weights must sum to 1, got 0.9"),
    (
        "negative-weight",
        _negative_weight,
        "graph.nodes[1].arms[1].weight",
        "greater than or equal to 0, got -0.1",
    ),
    (
        "gpus-1.5",
        _gpus_fraction,
        "graph.nodes[0].num_gpus",
        "must be a fraction in (0, 1] or a whole number of GPUs, got 1.5 (use e.g. 0.5 or 2)",
    ),
    (
        "gpus-negative",
        _gpus_negative,
        "graph.nodes[0].num_gpus",
        "must be a finite number >= 0, got -1.0",
    ),
    (
        "missing-model-file",
        _missing_file,
        "graph.nodes[0].model_path",
        "file not found: /nonexistent/m.onnx",
    ),
    (
        "missing-module",
        _missing_module,
        "graph.nodes[0].function",
        "cannot import 'no_such_module_xyz' for 'no_such_module_xyz:fn'",
    ),
    (
        "missing-attribute",
        _missing_attr,
        "graph.nodes[0].function",
        "'graphs.examples.passthrough' has no attribute 'nope'",
    ),
    (
        "not-import-path",
        _not_import_path,
        "graph.nodes[0].function",
        "'json' is not an import path",
    ),
    (
        "not-callable",
        _not_callable,
        "graph.nodes[0].function",
        "'graphs.spec:NAME_PATTERN' is not callable",
    ),
    ("extra-graph-key", _extra_graph_key, "graph.bogus", "unknown key; remove it"),
    ("extra-node-key", _extra_node_key, "graph.nodes[0].bogus", "unknown key; remove it"),
    (
        "wrong-type",
        _wrong_type,
        "graph.nodes[0].num_cpus",
        "Input should be a valid number, unable to parse string as a number, got 'lots'",
    ),
    ("unknown-kind", _unknown_kind, "graph.nodes[0]", "Input tag 'gizmo' found using 'kind'"),
    ("missing-kind", _missing_kind, "graph.nodes[0]", "Unable to extract tag using discriminator"),
    ("onnx-no-path", _onnx_no_path, "graph.nodes[0]", "runtime 'onnx' needs model_path"),
    ("python-no-class", _python_no_class, "graph.nodes[0]", "runtime 'python' needs model_class"),
    ("quorum", _quorum, "graph.nodes[1]", "quorum 3 is larger than the 2 members"),
    ("weights-length", _weights_length, "graph.nodes[1]", "weights has 1 entries for 2 members"),
    (
        "weighted-mean-no-weights",
        _weighted_mean_no_weights,
        "graph.nodes[1]",
        "combiner 'weighted_mean' needs weights",
    ),
    (
        "unknown-combiner",
        _unknown_combiner,
        "graph.nodes[1].combiner",
        "'median' is not an import path",
    ),
    (
        "autoscaling-min-max",
        _autoscaling,
        "graph.nodes[0].autoscaling_config",
        "max_replicas (2) must be greater than or equal to min_replicas (5)",
    ),
    (
        "ingress-autoscaling-type",
        _ingress_autoscaling,
        "graph.ingress.autoscaling_config.target_ongoing_requests",
        "Input should be a valid number",
    ),
    (
        "zero-dimension",
        _zero_dim,
        "graph.inputs[0].shape",
        "dimensions must be positive or -1 (variable), got [-1, 0]",
    ),
    ("unknown-datatype", _datatype, "graph.inputs[0].datatype", "got 'FP8'"),
    ("graph-name-pattern", _graph_name, "graph.name", "String should match pattern"),
    ("no-entry", _no_entry, "graph.entry", "required key is missing"),
    ("no-arms", _no_arms, "graph.nodes[1].arms", "List should have at least 1 item"),
    (
        "two-policies",
        _router(ab={}, bandit={}),
        "graph.nodes[2]",
        "give at most one of ab, canary, bandit, blue_green; got ab, bandit",
    ),
    (
        "canary-three-arms",
        _router(arms=[{"target": "a"}, {"target": "b"}, {"target": ["a", "b"]}], canary={}),
        "graph.nodes[2]",
        "a canary needs exactly 2 arms (stable, then candidate), got 3",
    ),
    (
        "bandit-weights",
        _router(arms=[{"target": "a", "weight": 0.5}, {"target": "b", "weight": 0.5}], bandit={}),
        "graph.nodes[2]",
        "bandit arms take no weight",
    ),
    (
        "some-weights",
        _router(arms=[{"target": "a", "weight": 1.0}, {"target": "b"}]),
        "graph.nodes[2].arms",
        "give a weight on every arm or on none",
    ),
    (
        "duplicate-arms",
        _router(arms=[{"target": "a"}, {"target": "a"}]),
        "graph.nodes[2].arms",
        "arm names must be unique; give arms a name (['a'] repeat)",
    ),
    (
        "unknown-bandit",
        _router(bandit={"algorithm": "exp3"}),
        "graph.nodes[2].bandit",
        "does not match any of the expected tags",
    ),
    (
        "linucb-features",
        _router(bandit={"algorithm": "linucb"}),
        "graph.nodes[2].bandit.features",
        "required key is missing",
    ),
    (
        "canary-steps",
        _router(canary={"steps": [50, 10]}),
        "graph.nodes[2].canary.steps",
        "steps must increase strictly",
    ),
    (
        "shadow-target",
        _router(shadow={"target": "ghost"}),
        "graph.nodes[2].shadow.target",
        "unknown node 'ghost'",
    ),
    (
        "sticky-key",
        _router(ab={"key": {}}),
        "graph.nodes[2].ab.key",
        "give exactly one of header or field",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "path", "message"),
    [pytest.param(m, p, msg, id=i) for i, m, p, msg in INVALID],
)
def test_invalid_graph_names_path_and_rule(
    mutate: Callable[[dict[str, Any]], None], path: str, message: str
) -> None:
    data = base()
    mutate(data)
    issues = issues_of(data)
    assert issues[0][0] == path
    assert message in issues[0][1]
    # One problem per graph (a node named 'ingress' currently also leaves its references
    # dangling, reported as a second issue; that follow-on message is not pinned here).
    if mutate is not _ingress_name:
        assert len(issues) == 1


def test_invalid_cases_are_distinct() -> None:
    assert len(INVALID) >= 14
    dumps = []
    for _, mutate, _, _ in INVALID:
        data = base()
        mutate(data)
        dumps.append(repr(data))
    assert len(set(dumps)) == len(INVALID)


def test_cycle_through_chain_in_arm_is_found() -> None:
    data = base()
    data["entry"] = "r"
    data["nodes"].append(
        {"name": "r", "kind": "router", "arms": [{"target": ["a", "r"], "weight": 1}]}
    )
    assert issues_of(data) == [("graph.nodes[1]", "call cycle: r -> r")]


def test_entry_chain_repeating_a_node_is_not_a_cycle() -> None:
    data = base()
    data["entry"] = ["a", "a"]
    assert parse_graph(data).entry == ["a", "a"]


def test_every_problem_is_reported_at_once() -> None:
    data = base()
    data["entry"] = ["a", "zz"]
    data["nodes"][0]["function"] = "no_such_module_xyz:fn"
    data["nodes"].append(pre("a"))
    with pytest.raises(GraphValidationError) as info:
        parse_graph(data)
    paths = [p for p, _ in info.value.issues]
    assert paths == ["graph.nodes[1].name", "graph.entry", "graph.nodes[0].function"]
    text = str(info.value)
    assert text.startswith("invalid graph (3 problems):\n  graph.nodes[1].name: duplicate node")
    assert "\n  graph.entry: unknown node 'zz'" in text


def test_error_class_maps_to_http_400_and_is_a_value_error() -> None:
    err = GraphValidationError([("graph.name", "bad")])
    assert err.status_code == 400
    assert isinstance(err, ValueError)
    assert str(err) == "invalid graph (1 problem):\n  graph.name: bad"
    assert err.to_json() == {"error": "GraphValidationError", "detail": str(err)}


def test_custom_prefix_is_used_in_paths() -> None:
    data = base()
    data["bogus"] = 1
    assert issues_of(data, prefix="args.graph") == [
        ("args.graph.bogus", "unknown key; remove it or check its spelling")
    ]


@pytest.mark.parametrize("gpus", [0, 0.25, 1, 2, 8])
def test_valid_gpu_counts_parse(gpus: float) -> None:
    data = base()
    data["nodes"][0]["num_gpus"] = gpus
    assert parse_graph(data).nodes[0].num_gpus == gpus


def test_checks_can_be_switched_off() -> None:
    data = base()
    data["entry"] = "m"
    data["nodes"] = [
        {
            "name": "m",
            "kind": "model",
            "runtime": "python",
            "model_class": "no_such_module_xyz:Model",
            "model_path": "relative/missing.bin",
        }
    ]
    spec = parse_graph(data, check_imports=False, check_files=False)
    node = spec.nodes[0]
    assert isinstance(node, ModelNode)
    assert node.model_path == "relative/missing.bin"  # left as written without file checks
    assert issues_of(data, check_files=False) == [
        (
            "graph.nodes[0].model_class",
            "cannot import 'no_such_module_xyz' for 'no_such_module_xyz:Model': "
            "No module named 'no_such_module_xyz'",
        )
    ]


def test_parse_graph_accepts_a_parsed_spec() -> None:
    spec = parse_graph(base())
    assert parse_graph(spec) == spec
    broken = spec.model_copy(update={"entry": "zz"})
    assert issues_of(broken) == [("graph.entry", "unknown node 'zz' (known nodes: a)")]


def test_format_loc() -> None:
    assert format_loc("graph", ("nodes", 2, "router", "arms", 0, "weight")) == (
        "graph.nodes[2].arms[0].weight"
    )
    assert format_loc("graph", ("inputs", 0, "shape")) == "graph.inputs[0].shape"
    assert format_loc("p", ()) == "p"


# --- files: YAML and relative model paths ------------------------------------------------------


def test_digits_yaml_parses_with_absolute_model_paths(digits_artifacts: str) -> None:
    spec = load_graph(DIGITS_YAML)
    assert isinstance(spec, GraphSpec)
    assert spec.name == "digits"
    assert spec.entry == ["scale", "split"]
    assert [n.name for n in spec.nodes] == ["scale", "split", "logreg", "mlp", "both"]
    models = {n.name: n for n in spec.nodes if isinstance(n, ModelNode)}
    assert set(models) == {"logreg", "mlp"}
    expected = {"logreg": "logreg.onnx", "mlp": "mlp.pt"}
    for name, node in models.items():
        assert node.model_path is not None
        assert os.path.isabs(node.model_path)
        assert os.path.isfile(node.model_path)
        assert node.model_path == os.path.join(os.path.abspath(digits_artifacts), expected[name])
    assert list(spec.edges()) == [
        {"from": "ingress", "to": "scale", "kind": "entry"},
        {"from": "scale", "to": "split", "kind": "then"},
        {"from": "split", "to": "logreg", "kind": "arm"},
        {"from": "split", "to": "mlp", "kind": "arm"},
        {"from": "split", "to": "both", "kind": "arm"},
        {"from": "both", "to": "logreg", "kind": "member"},
        {"from": "both", "to": "mlp", "kind": "member"},
    ]


def test_relative_model_path_resolves_against_graph_folder(tmp_path: Any) -> None:
    (tmp_path / "m.onnx").write_bytes(b"not really onnx")
    (tmp_path / "g.yaml").write_text(
        "name: g\n"
        "inputs: [{name: x}]\n"
        "entry: m\n"
        "nodes:\n"
        "  - {name: m, kind: model, runtime: onnx, model_path: m.onnx}\n"
    )
    spec = load_graph(str(tmp_path / "g.yaml"))
    node = spec.nodes[0]
    assert isinstance(node, ModelNode)
    assert node.model_path == str(tmp_path / "m.onnx")


def test_yaml_problems_are_prefixed_with_the_file(tmp_path: Any) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(
        "name: g\ninputs: [{name: x}]\nentry: a\n"
        "nodes:\n  - {name: a, kind: preprocess, function: " + IDENTITY + ", num_gpus: 1.5}\n"
    )
    with pytest.raises(GraphValidationError) as info:
        load_graph(path)
    [(where, message)] = info.value.issues
    assert where == f"{path}: graph.nodes[0].num_gpus"
    assert "got 1.5" in message


def test_invalid_yaml_names_the_file(tmp_path: Any) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(GraphValidationError) as info:
        load_graph(str(path))
    [(where, message)] = info.value.issues
    assert where == "graph"
    assert message.startswith(f"invalid YAML in {str(path)!r}: ")


def test_missing_file_names_the_file(tmp_path: Any) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(GraphValidationError) as info:
        load_graph(str(path))
    [(where, message)] = info.value.issues
    assert where == "graph"
    assert message.startswith(f"cannot read graph file {str(path)!r}: ")
    assert "No such file or directory" in message


def test_yaml_that_is_not_a_mapping(tmp_path: Any) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(GraphValidationError) as info:
        load_graph(str(path))
    assert info.value.issues == [("graph", f"{str(path)!r} must hold a mapping (the graph)")]


def test_load_graph_accepts_a_mapping() -> None:
    assert load_graph(base()) == parse_graph(base())


# --- build_app: the Serve config entry point ---------------------------------------------------


def test_build_app_without_graph() -> None:
    with pytest.raises(GraphValidationError) as info:
        build_app({})
    assert info.value.issues == [
        ("args.graph", "required: the graph inline, or a path to a graph YAML file")
    ]


def test_build_app_unknown_arg() -> None:
    with pytest.raises(GraphValidationError) as info:
        build_app({"graph": base(), "bogus": 1})
    assert info.value.issues == [
        ("args.bogus", "unknown key (allowed: graph, base_dir, autoscaling, fusion)")
    ]


def test_build_app_fusion_arg_is_checked() -> None:
    with pytest.raises(GraphValidationError) as info:
        build_app({"graph": base(), "fusion": "some"})
    assert info.value.issues == [("args.fusion", "one of none, cheap, all, got 'some'")]


def test_build_app_graph_of_wrong_type() -> None:
    with pytest.raises(GraphValidationError) as info:
        build_app({"graph": 5})
    assert info.value.issues == [("args.graph", "a mapping or a file path, got 5")]


def test_build_app_inline_graph_problems_use_args_prefix() -> None:
    data = base()
    data["entry"] = "zz"
    with pytest.raises(GraphValidationError) as info:
        build_app({"graph": data})
    assert info.value.issues == [("args.graph.entry", "unknown node 'zz' (known nodes: a)")]


def test_build_app_missing_file(tmp_path: Any) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(GraphValidationError) as info:
        build_app({"graph": path})
    [(where, message)] = info.value.issues
    assert where == "args.graph"
    assert message.startswith(f"cannot read graph file {path!r}")


def test_build_app_binds_without_starting_ray() -> None:
    app = build_app({"graph": base()})
    assert isinstance(app, Application)
    assert not ray.is_initialized()


def test_build_app_from_digits_yaml(digits_artifacts: str) -> None:
    app = build_app({"graph": DIGITS_YAML})
    assert isinstance(app, Application)
    assert not ray.is_initialized()


def test_compile_graph_validates_by_default() -> None:
    broken = parse_graph(base()).model_copy(update={"entry": "zz"})
    with pytest.raises(GraphValidationError):
        graphs.compile_graph(broken)


def test_ray_init_is_forbidden_here() -> None:
    with pytest.raises(RuntimeError, match="unit tests must not start Ray"):
        ray.init()


# --- known bugs --------------------------------------------------------------------------------


def test_infinite_gpus_is_a_validation_error() -> None:
    data = base()
    data["nodes"][0]["num_gpus"] = float("inf")
    [(where, message)] = issues_of(data)
    assert where == "graph.nodes[0].num_gpus"
    assert "got inf" in message


def test_unknown_key_named_like_a_node_kind_keeps_its_path() -> None:
    data = base()
    data["inputs"][0]["model"] = "x"
    assert issues_of(data) == [
        ("graph.inputs[0].model", "unknown key; remove it or check its spelling")
    ]


def test_empty_chain_as_arm_target_is_rejected() -> None:
    data = base()
    data["entry"] = "r"
    data["nodes"].append(
        {
            "name": "r",
            "kind": "router",
            "arms": [{"target": "a", "weight": 0.5}, {"target": [], "weight": 0.5}],
        }
    )
    [(where, _)] = issues_of(data)
    assert where == "graph.nodes[1].arms[1].target"


def test_autoscaling_message_has_no_pydantic_prefix() -> None:
    data = base()
    _autoscaling(data)
    [(_, message)] = issues_of(data)
    assert message == "max_replicas (2) must be greater than or equal to min_replicas (5)!"


def test_missing_onnx_runtime_is_named_at_build_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime" else real(name, *a),
    )
    data = base()
    _missing_file(data)
    found = issues_of(data)
    assert ("graph.nodes[0].model_path", "file not found: /nonexistent/m.onnx") in found
    runtime = [message for path, message in found if path == "graph.nodes[0].runtime"]
    assert runtime and "servegraph[onnx]" in runtime[0] and "servegraph[gpu]" in runtime[0]
