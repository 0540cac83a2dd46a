"""An LLM graph on the real vLLM engine: prompt template -> A/B router -> two engines.

Every test here talks to one deployment: ``configs/llm-ab.yaml`` under ``serve run``, as a user
starts it (the e2e tier's check of that config is here, so the engines start once, not twice;
``tests/llm/early.py`` starts it while the integration tier runs); the ``openai`` package is the
client.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from graphs.examples.tiny_llm import ensure_built
from tests.llm import early
from tests.promql import has, scrape
from tests.support import (
    BASE_URL,
    ROOT,
    route_live,
    wait_for,
)

pytestmark = pytest.mark.llm

CONFIG = early.AB_CONFIG
APP = "llm-ab"
SYSTEM = "You are a helpful assistant. Answer briefly."  # the graph's template adds it
ARMS = ("chat-a", "chat-b")


@pytest.fixture(scope="module")
def url(ray_cluster: None) -> Iterator[str]:
    """``serve run --non-blocking configs/llm-ab.yaml``, started while the integration tier ran
    if it did; deleted after this module, before the e2e tier deploys more configs."""
    url = f"{BASE_URL}/{APP}"
    early.start_ab()
    try:

        def answers() -> bool:
            r = httpx.post(f"{url}/predict", json={"inputs": {"prompt": ["Hello"]}}, timeout=30)
            return r.status_code == 200

        wait_for(answers, 240, f"{CONFIG} answering under serve run")
        wait_for(lambda: route_live(APP), 60, f"route /{APP}")
        yield url
    finally:
        early.stop_ab()


@pytest.fixture(scope="module")
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ensure_built())


def node_stats(node: str) -> dict[str, Any]:
    from ray import serve

    handle = serve.get_deployment_handle(node, app_name=APP)
    return dict(handle.stats.remote().result(timeout_s=30))


def test_the_template_and_the_router_run_fused_in_the_ingress(url: str) -> None:
    nodes = httpx.get(f"{url}/graph", timeout=30).json()["nodes"]
    assert {n["name"]: n["deployment"] for n in nodes} == {
        "template": "ingress",
        "split": "ingress",
        "chat-a": "chat-a",
        "chat-b": "chat-b",
    }


def test_models_lists_the_graph(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [APP]


def test_chat_goes_through_the_template_and_a_router_arm(
    client: openai.OpenAI, tokenizer: Any
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=APP, messages=[{"role": "user", "content": "Hello!"}], max_tokens=6, temperature=0
    )
    reply = raw.parse()
    assert reply.object == "chat.completion" and reply.model == APP
    (choice,) = reply.choices
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= 6
    # The template node put its system message first: the engine saw both messages.
    expected = tokenizer.apply_chat_template(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hello!"}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
    )["input_ids"]
    assert reply.usage.prompt_tokens == len(expected)
    served = reply.model_extra["served_by"]  # type: ignore[index]
    assert served[:2] == ["template", "split"] and served[2] in ARMS
    assert raw.headers["x-served-by"] == ",".join(served)
    assert raw.headers["x-feedback-token"] == reply.model_extra["feedback_token"]  # type: ignore[index]
    assert raw.headers["x-request-id"] in reply.id


def test_chat_streams_token_by_token_and_matches_the_full_answer(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Tell me a story."}]
    full = client.chat.completions.create(
        model=APP,
        messages=messages,
        max_tokens=64,
        temperature=0,
        extra_body={"ignore_eos": True},
    ).choices[0]
    raw = client.chat.completions.with_raw_response.create(
        model=APP,
        messages=messages,
        max_tokens=64,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-served-by"].startswith("template,split,chat-")
    assert raw.headers["x-feedback-token"].startswith("v2.")
    chunks = list(raw.parse())
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    # Streamed, not one blob: the node sends what the engine made in the last stream_batch_ms
    # (20 ms) as one chunk, so how many steps share a chunk depends on timing; 64 engine steps
    # never fit in one 20 ms window, so "more than one" is certain.
    assert len([d for d in deltas if d.content]) >= 2
    text = "".join(d.content or "" for d in deltas)
    assert text == full.message.content  # greedy: both arms hold the same weights
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 64


def test_completions_stream_and_not(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=APP, prompt="Once upon a time", max_tokens=5)
    assert reply.object == "text_completion" and reply.usage is not None
    assert reply.usage.completion_tokens <= 5 and isinstance(reply.choices[0].text, str)
    stream = client.completions.create(
        model=APP, prompt="Once upon a time", max_tokens=8, stream=True, seed=3, temperature=1
    )
    chunks = list(stream)
    assert chunks and all(c.object == "text_completion" for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_llm_nodes_report_time_to_first_token_and_tokens_per_second(
    client: openai.OpenAI,
) -> None:
    served = set()
    for _ in range(4):  # streamed: the arms that served them report a time to first token
        raw = client.completions.with_raw_response.create(
            model=APP, prompt="Hi", max_tokens=8, stream=True
        )
        served.add(raw.headers["x-served-by"].split(",")[-1])
        assert list(raw.parse())
    assert served <= set(ARMS)

    def reported() -> bool:
        samples = scrape()
        return all(
            has(samples, "ray_servegraph_llm_time_to_first_token_ms_count", node=arm)
            and has(samples, "ray_servegraph_llm_tokens_per_second_count", node=arm)
            and has(samples, "ray_servegraph_node_requests_total", node=arm, outcome="ok")
            for arm in served
        )

    assert wait_for(reported, 60, f"LLM metrics of {sorted(served)} on Ray's endpoint")


def test_predict_also_serves_a_prompt(url: str) -> None:
    r = httpx.post(f"{url}/predict", json={"inputs": {"prompt": ["Hello"]}}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    text = body["outputs"]["text"]
    assert isinstance(text, str) and text.strip(), body  # the engine's completion
    assert body["outputs"]["usage"]["completion_tokens"] <= 32  # the template's default
    assert body["served_by"][2] in ARMS


def test_router_splits_llm_requests_as_configured(client: openai.OpenAI) -> None:
    arms: Counter[str] = Counter()
    for i in range(40):
        reply = client.completions.create(model=APP, prompt=f"count {i}", max_tokens=1)
        arms[reply.model_extra["served_by"][2]] += 1  # type: ignore[index]
    # weights 0.5 / 0.5: both arms serve, neither takes more than 3 in 4 requests.
    assert set(arms) == set(ARMS) and min(arms.values()) >= 10, arms


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("chat/completions", {"model": APP}, 400, "messages"),
        ("chat/completions", {"model": APP, "messages": [{"role": "x"}]}, 400, "messages.0.role"),
        (
            "chat/completions",
            {"model": APP, "messages": [{"role": "user", "content": "x"}], "temperature": 9},
            400,
            "temperature",
        ),
        ("completions", {"model": APP, "prompt": "x", "best_of": 2}, 400, "best_of"),
        ("completions", {"model": APP, "prompt": "x", "max_tokens": 99999}, 400, "max_tokens"),
        ("completions", {"model": "gpt-4", "prompt": "x"}, 404, "model"),
    ],
)
def test_bad_requests_get_openai_errors_naming_the_field(
    url: str, path: str, body: dict[str, Any], status: int, param: str
) -> None:
    r = httpx.post(f"{url}/v1/{path}", json=body, timeout=60)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert "Traceback" not in r.text


def test_openai_client_raises_bad_request_with_the_param(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=APP, messages=[{"role": "user", "content": "x"}], max_tokens=5000, stream=True
        )
    assert info.value.status_code == 400
    assert info.value.body["param"] == "max_tokens"  # type: ignore[index]


def test_client_disconnect_aborts_generation_in_the_engine(url: str) -> None:
    body = {
        "model": APP,
        "prompt": "Go on and on.",
        "max_tokens": 1900,  # tens of seconds of generation on this CPU
        "ignore_eos": True,
        "stream": True,
    }
    before = {arm: node_stats(arm) for arm in ARMS}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        arm = r.headers["x-served-by"].split(",")[-1]
        lines = r.iter_lines()
        events = 0
        while events < 5:
            events += next(lines).startswith("data:")
        during = node_stats(arm)
        assert during["unfinished_requests"] == 1 and during["running"] == 1
    disconnected = time.monotonic()  # leaving the block closes the connection

    def engine_idle() -> dict[str, Any] | None:
        stats = node_stats(arm)
        return stats if stats["unfinished_requests"] == 0 else None

    after = wait_for(engine_idle, 5, f"{arm}'s engine to drop the request")
    assert time.monotonic() - disconnected < 5
    assert after["aborted"] == before[arm]["aborted"] + 1
    assert after["completion_tokens"] - before[arm]["completion_tokens"] < 1900


def test_readme_llm_client_block_runs_as_written(url: str) -> None:
    # The README's LLM section calls /llm-ab, the graph this module serves.
    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme.split("## LLM graphs", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```py\n(.*?)```", section, flags=re.S)
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    usage = run.stdout.rstrip("\n").rsplit("\n", 1)[-1]  # after the streamed text
    assert usage.split(" ", 1)[0].isdigit() and "'template', 'split', 'chat-" in usage
