"""The OpenAI wire format (graphs.openai_protocol) without Ray: validation, errors, SSE, bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from graphs import parse_graph
from graphs.openai_protocol import (
    DONE,
    ChatCompletionRequest,
    ChunkEncoder,
    CompletionRequest,
    OpenAIError,
    as_openai_error,
    completion_body,
    llm_outputs,
    parse_request,
    sse,
)
from nodes.errors import NodeError, OverloadedError, RequestValidationError


def chat(**fields: Any) -> bytes:
    body = {"model": "g", "messages": [{"role": "user", "content": "hi"}], **fields}
    return json.dumps(body).encode()


# --- requests ------------------------------------------------------------------------------------


def test_chat_request_becomes_the_graph_payload_with_only_what_was_set() -> None:
    req = parse_request(ChatCompletionRequest, chat(max_completion_tokens=7, temperature=0))
    assert req.payload() == {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 7,
        "temperature": 0,
    }
    req = parse_request(CompletionRequest, b'{"model": "g", "prompt": ["once"], "stream": true}')
    assert req.payload() == {"prompt": "once"} and req.stream


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"model": "g"}', "messages"),
        (chat(temperature=5), "temperature"),
        (chat(top_p=1.5), "top_p"),
        (chat(n=0), "n"),
        (chat(max_tokens=-1), "max_tokens"),
        (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
        (chat(logit_bias={"1": 2}), "logit_bias"),
        (chat(stream_options={"include_usage": True}), "stream_options"),
        (chat(messages=[{"role": "user"}, {"role": "wizard", "content": "x"}]), "messages.1.role"),
        (chat(messages="hi"), "messages"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "g", "prompt": ["a", "b"]}', "prompt"),
    ],
)
def test_bad_requests_are_400_naming_the_field(raw: bytes, param: str) -> None:
    model = CompletionRequest if b'"prompt"' in raw else ChatCompletionRequest
    with pytest.raises(OpenAIError) as info:
        parse_request(model, raw)
    err = info.value
    assert (err.status, err.param, err.type, err.code) == (
        400,
        param,
        "invalid_request_error",
        None,
    )
    body = err.body()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert param.split(".")[0] in body["error"]["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b""])
def test_bodies_that_are_not_json_objects_are_400(raw: bytes) -> None:
    with pytest.raises(OpenAIError) as info:
        parse_request(ChatCompletionRequest, raw)
    assert info.value.status == 400


def test_graph_failures_map_to_openai_errors() -> None:
    bad = as_openai_error(RequestValidationError("max_tokens", "too many"), "g")
    assert (bad.status, bad.param, bad.message) == (400, "max_tokens", "max_tokens: too many")
    busy = as_openai_error(OverloadedError("full", retry_after_s=2), "g")
    assert busy.status == 503 and busy.headers == {"Retry-After": "2"}
    failed = as_openai_error(NodeError("llm"), "g")
    assert (failed.status, failed.type) == (500, "server_error")
    assert "node 'llm' failed" in failed.message and "error id" in failed.message
    other = as_openai_error(ZeroDivisionError("secret path /etc/x"), "g")
    assert other.status == 500 and "secret" not in other.message and "error id" in other.message


# --- streaming -----------------------------------------------------------------------------------


def events(raw: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for event in raw:
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        out.append(json.loads(event[len(b"data: ") : -2]))
    return out


def test_sse_framing() -> None:
    assert sse({"a": 1}) == b'data: {"a":1}\n\n'
    assert DONE == b"data: [DONE]\n\n"


def test_chat_chunks_start_with_the_role_and_skip_empty_steps() -> None:
    enc = ChunkEncoder("chat", "chatcmpl-1", "g", include_usage=True, created=5)
    got = events(enc.encode({"index": 0, "text": "He", "token_ids": [1], "finish_reason": None}))
    assert got == [
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 5,
            "model": "g",
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "He"},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        }
    ]
    # A token that completes no character yet sends nothing.
    assert enc.encode({"index": 0, "text": "", "token_ids": [2], "finish_reason": None}) == []
    (last,) = events(enc.encode({"index": 0, "text": "y", "finish_reason": "length"}))
    assert last["choices"][0]["delta"] == {"content": "y"}
    assert last["choices"][0]["finish_reason"] == "length"
    (usage,) = events(enc.encode({"usage": {"prompt_tokens": 3, "completion_tokens": 2}}))
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 2


def test_completion_chunks_echo_and_usage_only_when_asked() -> None:
    enc = ChunkEncoder("completion", "cmpl-1", "g", echo="Q: ")
    (first,) = events(enc.encode({"index": 1, "text": "A", "finish_reason": None}))
    assert first["object"] == "text_completion"
    assert first["choices"][0]["text"] == "Q: A" and first["choices"][0]["index"] == 1
    assert enc.encode({"usage": {"prompt_tokens": 1, "completion_tokens": 1}}) == []
    assert enc.usage == {"prompt_tokens": 1, "completion_tokens": 1}
    (err,) = events([enc.error(OpenAIError(500, "boom", type="server_error"))])
    assert err["error"]["message"] == "boom"


def test_non_streaming_bodies() -> None:
    out = {
        "text": "hey",
        "choices": [{"index": 0, "text": "hey", "token_ids": [1], "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
    }
    body = completion_body("chat", "chatcmpl-1", "g", out, created=1)
    assert body["object"] == "chat.completion" and body["usage"]["total_tokens"] == 3
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hey"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    text = completion_body("completion", "cmpl-1", "g", out, echo="say ", created=1)
    assert text["object"] == "text_completion" and text["choices"][0]["text"] == "say hey"


# --- which graphs speak OpenAI -------------------------------------------------------------------


def _graph(entry: Any, nodes: list[dict[str, Any]]) -> Any:
    data = {
        "name": "g",
        "inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [1]}],
        "entry": entry,
        "nodes": nodes,
    }
    return parse_graph(data, check_files=False, check_imports=False)


LLM_A = {"name": "a", "kind": "model", "runtime": "vllm", "model_path": "/m"}
LLM_B = {**LLM_A, "name": "b"}
PRE = {"name": "pre", "kind": "preprocess", "function": "nodes.llm:PromptTemplate"}
ONNX = {"name": "clf", "kind": "model", "runtime": "onnx", "model_path": "/m.onnx"}


def router(*targets: str) -> dict[str, Any]:
    arms = [{"target": t, "weight": 1 / len(targets)} for t in targets]
    return {"name": "r", "kind": "router", "arms": arms}


def test_llm_outputs_follow_the_entry_through_routers() -> None:
    assert llm_outputs(_graph(["pre", "a"], [PRE, LLM_A])) == ["a"]
    assert llm_outputs(_graph(["pre", "r"], [PRE, router("a", "b"), LLM_A, LLM_B])) == ["a", "b"]
    # One arm that is not an LLM: the graph's output is not always text.
    assert llm_outputs(_graph("r", [router("a", "clf"), LLM_A, ONNX])) == []
    assert llm_outputs(_graph(["a", "pre"], [PRE, LLM_A])) == []
    # Arms that share one engine (a node used twice is one instance) still end in an LLM.
    pre_b = {**PRE, "name": "pre-b"}
    shared = {
        "name": "r",
        "kind": "router",
        "arms": [{"target": ["pre", "a"]}, {"target": ["pre-b", "a"]}],
    }
    assert llm_outputs(_graph("r", [shared, PRE, pre_b, LLM_A])) == ["a"]
