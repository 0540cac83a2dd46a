"""Build-time checks of ``runtime: vllm`` nodes (graphs.validate)."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import pytest

from graphs import GraphValidationError, parse_graph
from graphs.examples.tiny_llm import ensure_built


def llm_graph(**fields: Any) -> dict[str, Any]:
    llm = {"name": "llm", "kind": "model", "runtime": "vllm", "model_path": ensure_built()}
    return {
        "name": "g",
        "inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [1]}],
        "entry": ["pre", "llm"],
        "nodes": [
            {"name": "pre", "kind": "preprocess", "function": "nodes.llm:PromptTemplate"},
            {**llm, **fields},
        ],
    }


def issues(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(GraphValidationError) as info:
        parse_graph(data)
    return info.value.issues


def test_a_valid_llm_graph_parses() -> None:
    spec = parse_graph(llm_graph(num_gpus=0.5, engine={"max_model_len": 128}))
    assert spec.node("llm").engine.max_model_len == 128  # type: ignore[union-attr]


def test_model_path_must_be_a_model_directory(tmp_path: Any) -> None:
    (tmp_path / "empty").mkdir()
    assert issues(llm_graph(model_path=str(tmp_path / "empty"))) == [
        ("graph.nodes[1].model_path", f"{tmp_path / 'empty'} has no config.json")
    ]
    (path, message), *_ = issues(llm_graph(model_path=str(tmp_path / "nope")))
    assert path == "graph.nodes[1].model_path" and "is not a directory" in message


def test_missing_vllm_is_named_at_build_time(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    (path, message), *_ = issues(llm_graph())
    assert path == "graph.nodes[1].runtime" and "pip install -e '.[llm-cpu]'" in message


@pytest.mark.parametrize(
    ("fields", "path", "words"),
    [
        ({"model_path": None}, "graph.nodes[1]", "needs model_path"),
        ({"batching": {"max_batch_size": 4}}, "graph.nodes[1]", "remove batching"),
        ({"engine": {"tensor_parallel_size": 2}}, "graph.nodes[1]", "num_gpus: 2"),
        (
            {"num_gpus": 0.5, "engine": {"gpu_memory_utilization": 0.9}},
            "graph.nodes[1]",
            "use at most 0.5",
        ),
        ({"engine": {"max_model_len": 4}}, "graph.nodes[1].engine.max_model_len", "equal to 16"),
        ({"engine": {"cpu_kv_cache_gb": 0.5}}, "graph.nodes[1].engine.cpu_kv_cache_gb", "integer"),
        ({"engine": {"dtpye": "float32"}}, "graph.nodes[1].engine.dtpye", "unknown key"),
    ],
)
def test_bad_llm_nodes_name_the_setting(fields: dict[str, Any], path: str, words: str) -> None:
    found = issues(llm_graph(**fields))
    assert any(p == path and words in m for p, m in found), found


def test_engine_settings_belong_to_vllm_nodes_only() -> None:
    data = llm_graph(runtime="onnx", model_path="/x.onnx", engine={"dtype": "float32"})
    (path, message), *_ = issues(data)
    assert path == "graph.nodes[1]" and "runtime 'vllm' only" in message


@pytest.mark.llm
def test_unknown_extra_engine_args_fail_the_build() -> None:
    found = issues(llm_graph(engine={"extra_args": {"max_num_seqz": 4}}))
    assert found == [
        (
            "graph.nodes[1].engine.extra_args.max_num_seqz",
            "not an argument of vLLM's AsyncEngineArgs; check its spelling",
        )
    ]


def test_shipped_llm_graphs_are_valid() -> None:
    from graphs import load_graph
    from graphs.validate import PACKAGE_ROOT

    ensure_built()
    for name in ("llm_chat.yaml", "llm_ab.yaml"):
        spec = load_graph(os.path.join(PACKAGE_ROOT, "graphs", "examples", name))
        assert spec.name.startswith("llm-")
