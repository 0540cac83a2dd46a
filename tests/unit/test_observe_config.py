"""The ``observe:`` block at build time: bad settings and bad references name their config path;
relative paths resolve against the graph file's folder."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from graphs import GraphValidationError, load_graph, parse_graph
from graphs.examples.digits import REFERENCE
from graphs.validate import PACKAGE_ROOT

IDENTITY = "graphs.examples.passthrough:identity"


def graph(observe: Any, datatype: str = "FP32") -> dict[str, Any]:
    return {
        "name": "g",
        "inputs": [{"name": "x", "datatype": datatype, "shape": [-1, 3]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
        "entry": "a",
        "nodes": [{"name": "a", "kind": "preprocess", "function": IDENTITY}],
        "observe": observe,
    }


def issues_of(data: Any, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(GraphValidationError) as info:
        parse_graph(data, **kwargs)
    return info.value.issues


@pytest.mark.parametrize(
    ("observe", "path", "message"),
    [
        ({"log": {}}, "graph.observe.log", "give exactly one sink: path"),
        ({"log": {"path": "a", "url": "http://x"}}, "graph.observe.log", "exactly one sink"),
        ({"log": {"url": "ftp://x"}}, "graph.observe.log.url", "should match pattern"),
        ({"log": {"path": "a", "queue": 0}}, "graph.observe.log.queue", "greater than or equal"),
        ({"drift": {}}, "graph.observe.drift.reference", "required key is missing"),
        (
            {"drift": {"reference": {"window": 5}}},
            "graph.observe.drift.reference",
            "window: Input should be greater than or equal to 10, got {'window': 5}",
        ),
        ({"drift": {"reference": 3}}, "graph.observe.drift.reference", "a file path or {window"),
        (
            {"drift": {"reference": {"window": 50}, "thresholds": {"js": 2}}},
            "graph.observe.drift.thresholds.js",
            "less than or equal to 1",
        ),
        (
            {"drift": {"reference": {"window": 50}, "window": 20, "min_samples": 30}},
            "graph.observe.drift",
            "min_samples (30) must not exceed window (20)",
        ),
        (
            {"drift": {"reference": {"window": 50}, "features": 0}},
            "graph.observe.drift.features",
            "must be 'all' or a number of features >= 1",
        ),
        ({"drift": {"reference": {"window": 50}}, "sample": 1}, "graph.observe.sample", "unknown"),
    ],
)
def test_bad_settings_name_their_path(observe: Any, path: str, message: str) -> None:
    issues = issues_of(graph(observe), check_imports=False)
    assert any(p == path and message in m for p, m in issues), issues


def test_references_are_read_at_build_time(tmp_path: str) -> None:
    issues = issues_of(graph({"drift": {"reference": "missing.npz"}}), base_dir=str(tmp_path))
    assert issues[0][0] == "graph.observe.drift.reference"
    assert "cannot read reference" in issues[0][1] and "missing.npz" in issues[0][1]
    np.savez(os.path.join(tmp_path, "wide.npz"), x=np.zeros((5, 4)), y=np.zeros((5, 2)))
    issues = issues_of(graph({"drift": {"reference": "wide.npz"}}), base_dir=str(tmp_path))
    assert issues == [
        (
            "graph.observe.drift.reference",
            "'x' has 4 features per row in the reference, but the graph's shape [-1, 3] says 3",
        )
    ]
    np.savez(os.path.join(tmp_path, "other.npz"), z=np.zeros((5, 3)))
    issues = issues_of(graph({"drift": {"reference": "other.npz"}}), base_dir=str(tmp_path))
    assert "lacks input 'x' (it holds z)" in issues[0][1]


def test_drift_refuses_text_tensors() -> None:
    issues = issues_of(graph({"drift": {"reference": {"window": 50}}}, "BYTES"))
    assert issues[0][0] == "graph.observe.drift" and "'x' is BYTES" in issues[0][1]


def test_relative_paths_resolve_against_the_graph_folder(tmp_path: str) -> None:
    np.savez(os.path.join(tmp_path, "ref.npz"), x=np.zeros((5, 3)))
    spec = parse_graph(
        graph({"drift": {"reference": "ref.npz"}, "log": {"path": "logs"}}), base_dir=str(tmp_path)
    )
    assert spec.observe is not None and spec.observe.drift and spec.observe.log
    assert spec.observe.drift.reference == os.path.join(tmp_path, "ref.npz")
    assert spec.observe.log.path == os.path.join(tmp_path, "logs")


def test_the_digits_ab_example_ships_its_reference() -> None:
    spec = load_graph(os.path.join(PACKAGE_ROOT, "graphs", "examples", "digits_ab.yaml"))
    assert spec.observe is not None and spec.observe.drift is not None
    assert spec.observe.drift.reference == REFERENCE
    with np.load(REFERENCE) as data:
        assert data["input"].shape == (1347, 64) and data["label"].shape == (1347,)
