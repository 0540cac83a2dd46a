"""LLM nodes without the engine: payload parsing, chat templates, context budget, prompt
templates, engine arguments, and the build-time checks of ``runtime: vllm`` nodes."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from typing import Any

import numpy as np
import pytest

from graphs import GraphValidationError, parse_graph
from graphs.errors import RequestValidationError
from graphs.examples.tiny_llm import ensure_built
from graphs.spec import ModelNode
from nodes.llm import (
    ChatMessage,
    PromptTemplate,
    completion_budget,
    engine_env,
    engine_kwargs,
    paced,
    parse_generation,
    prompt_token_ids,
    render_messages,
    unknown_engine_args,
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ensure_built())


# --- payloads ------------------------------------------------------------------------------------


def test_payload_takes_a_prompt_or_messages_and_openai_sampling_names() -> None:
    req = parse_generation(
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stop": "\n"}
    )
    assert req.messages is not None and req.messages[0].text() == "hi"
    assert (req.max_tokens, req.stop, req.temperature, req.n) == (5, "\n", 1.0, 1)
    # /predict hands a BYTES tensor of shape [1]: the one string is the prompt.
    assert parse_generation({"prompt": np.asarray(["Hello"], dtype=object)}).prompt == "Hello"
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert ChatMessage(role="user", content=parts).text() == "ab"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"prompt": "x", "temperature": 3}, "temperature"),
        ({"prompt": "x", "top_p": 0}, "top_p"),
        ({"prompt": "x", "n": 100}, "n"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"prompt": "x", "min_tokens": 9, "max_tokens": 3}, "min_tokens"),
        ({"prompt": "x", "beam_width": 3}, "beam_width"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"messages": []}, "messages"),
        ({}, "prompt"),
        ({"prompt": "x", "messages": [{"role": "user", "content": "y"}]}, "prompt"),
    ],
)
def test_bad_payloads_name_their_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestValidationError) as info:
        parse_generation(payload)
    assert info.value.field == field
    assert info.value.status_code == 422


# --- prompts -------------------------------------------------------------------------------------


def test_chat_template_renders_messages_with_the_assistant_cue(tokenizer: Any) -> None:
    messages = [
        ChatMessage(role="system", content="be brief"),
        ChatMessage(role="user", content="hi"),
    ]
    assert render_messages(tokenizer, messages) == "<s>system: be brief\nuser: hi\nassistant:"
    chat = parse_generation({"messages": [{"role": "user", "content": "hi"}]})
    ids = prompt_token_ids(tokenizer, chat)
    assert tokenizer.decode(ids) == "<s>user: hi\nassistant:"
    assert ids.count(tokenizer.bos_token_id) == 1  # the template's BOS, not a second one
    prompt = prompt_token_ids(tokenizer, parse_generation({"prompt": "hi there"}))
    assert tokenizer.decode(prompt) == "hi there"


def test_a_tokenizer_without_chat_template_is_a_request_error(tokenizer: Any) -> None:
    class Plain:
        chat_template = None

    with pytest.raises(RequestValidationError) as info:
        render_messages(Plain(), [ChatMessage(role="user", content="hi")])
    assert info.value.field == "messages" and "PromptTemplate" in info.value.message


def test_completion_budget_fills_the_context_or_names_the_field() -> None:
    chat = parse_generation({"messages": [{"role": "user", "content": "x"}]})
    assert completion_budget(chat, 10, 256) == 246
    asked = parse_generation({"prompt": "x", "max_tokens": 100})
    assert completion_budget(asked, 10, 256) == 100
    with pytest.raises(RequestValidationError) as info:
        completion_budget(parse_generation({"prompt": "x", "max_tokens": 250}), 10, 256)
    assert info.value.field == "max_tokens" and "at most 246" in info.value.message
    with pytest.raises(RequestValidationError) as info:
        completion_budget(chat, 300, 256)
    assert info.value.field == "messages"


def test_prompt_template_adds_system_wraps_prompts_and_fills_defaults() -> None:
    template = PromptTemplate(
        system="be brief", template="Q: {prompt}\nA:", defaults={"max_tokens": 8}
    )
    chat = template({"messages": [{"role": "user", "content": "hi"}], "temperature": 0})
    assert chat["messages"][0] == {"role": "system", "content": "be brief"}
    assert (chat["max_tokens"], chat["temperature"]) == (8, 0)
    own_system = [{"role": "system", "content": "mine"}, {"role": "user", "content": "hi"}]
    assert template({"messages": own_system})["messages"] == own_system
    done = template({"prompt": np.asarray(["{x}"], dtype=object), "max_tokens": 2})
    assert (done["prompt"], done["max_tokens"]) == ("Q: {x}\nA:", 2)
    with pytest.raises(ValueError, match="prompt"):
        PromptTemplate(template="no placeholder")
    with pytest.raises(ValueError, match="unknown sampling settings"):
        PromptTemplate(defaults={"max_tokenz": 3})


# --- engine arguments ----------------------------------------------------------------------------


def node(**fields: Any) -> ModelNode:
    return ModelNode.model_validate(
        {"name": "llm", "kind": "model", "runtime": "vllm", "model_path": "/m", **fields}
    )


def test_engine_kwargs_from_the_node() -> None:
    spec = node(
        engine={
            "dtype": "bfloat16",
            "max_model_len": 256,
            "cpu_kv_cache_gb": 1,
            "extra_args": {"enable_prefix_caching": False},
        }
    )
    cpu = engine_kwargs(spec, on_gpu=False)
    assert cpu["model"] == "/m" and cpu["dtype"] == "bfloat16" and cpu["max_model_len"] == 256
    assert cpu["enforce_eager"] is True and "gpu_memory_utilization" not in cpu
    assert cpu["enable_prefix_caching"] is False
    assert engine_env(spec.engine) == {"VLLM_CPU_KVCACHE_SPACE": "1"}  # type: ignore[arg-type]
    # Two replicas on one GPU (num_gpus: 0.5) each take their share of its memory.
    half = engine_kwargs(node(num_gpus=0.5), on_gpu=True)
    assert half["gpu_memory_utilization"] == 0.45 and half["enforce_eager"] is False
    own = engine_kwargs(node(num_gpus=0.5, engine={"gpu_memory_utilization": 0.3}), on_gpu=True)
    assert own["gpu_memory_utilization"] == 0.3


@pytest.mark.llm
def test_unknown_engine_args_are_named() -> None:
    assert unknown_engine_args({"enable_prefix_caching": True, "max_num_batched_tokens": 64}) == []
    assert unknown_engine_args({"enable_prefix_cache": True}) == ["enable_prefix_cache"]


# --- build-time checks -------------------------------------------------------------------------


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


# --- streaming -----------------------------------------------------------------------------------


class Engine:
    """A stand-in for vLLM's per-request output stream: steps every ``step_s``; steps the
    consumer has not taken yet are merged, as vLLM's RequestOutputCollector merges deltas."""

    def __init__(self, tokens: int, step_s: float):
        self.tokens, self.step_s = tokens, step_s
        self.closed = False

    async def stream(self) -> Any:
        made: list[int] = []
        ready = asyncio.Event()

        async def produce() -> None:
            for token in range(self.tokens):
                await asyncio.sleep(self.step_s)
                made.append(token)
                ready.set()

        producer = asyncio.create_task(produce())
        try:
            taken = 0
            while taken < self.tokens:
                await ready.wait()
                ready.clear()
                batch, made[:] = list(made), []  # everything made since the last pull
                taken += len(batch)
                yield batch
        finally:
            producer.cancel()
            self.closed = True


def pull(engine: Engine, interval_s: float) -> list[list[int]]:
    async def run() -> list[list[int]]:
        return [chunk async for chunk in paced(engine.stream(), interval_s)]

    return asyncio.run(run())


def test_a_fast_engine_streams_in_fewer_larger_chunks() -> None:
    chunks = pull(Engine(tokens=60, step_s=0.002), interval_s=0.03)
    assert [t for c in chunks for t in c] == list(range(60))  # nothing lost, in order
    assert len(chunks[0]) <= 2  # the first token goes out at once
    assert len(chunks) < 20


def test_a_slow_engine_streams_token_by_token() -> None:
    chunks = pull(Engine(tokens=6, step_s=0.03), interval_s=0.01)
    assert chunks == [[i] for i in range(6)]
    assert len(pull(Engine(tokens=30, step_s=0.001), interval_s=0)) >= 10  # 0: no pacing


def test_closing_the_stream_closes_the_engine_stream() -> None:
    engine = Engine(tokens=100, step_s=0.005)

    async def run() -> None:
        stream = paced(engine.stream(), 0.01)
        await stream.__anext__()
        await stream.aclose()

    asyncio.run(run())
    assert engine.closed
