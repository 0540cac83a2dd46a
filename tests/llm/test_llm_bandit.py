"""A bandit router over two LLM arms learns from rewards posted to /feedback, streaming or not.

Its own deployment (the A/B module's is gone by then): template -> bandit router -> two engines,
each given a credential in its environment that /graph must never show.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import httpx
import openai
import pytest
import yaml

from graphs.validate import PACKAGE_ROOT

pytestmark = pytest.mark.llm

APP = "llm-bandit"
ARMS = ("chat-a", "chat-b")


def bandit_graph() -> dict[str, Any]:
    """The A/B demo graph with its router turned into a Thompson-sampling bandit."""
    with open(os.path.join(PACKAGE_ROOT, "graphs", "examples", "llm_ab.yaml")) as f:
        graph = yaml.safe_load(f)
    graph["name"] = APP
    for node in graph["nodes"]:
        if node.get("runtime") == "vllm":
            node["engine"] = {**node["engine"], "env": {"HF_TOKEN": "hf_not_for_your_eyes"}}
    graph["nodes"] = [
        {
            "name": "split",
            "kind": "router",
            "seed": 0,
            "bandit": {"algorithm": "thompson_beta"},
            "arms": [{"target": arm} for arm in ARMS],
        }
        if node["name"] == "split"
        else node
        for node in graph["nodes"]
    ]
    return dict(graph)


@pytest.fixture(scope="module")
def url(deploy_llm_graph: Any) -> str:
    return str(deploy_llm_graph(bandit_graph(), APP))


def test_bandit_learns_which_llm_arm_earns_rewards(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
    served: list[str] = []
    with httpx.Client(timeout=30) as http:
        for i in range(60):
            reply = client.completions.create(model=APP, prompt=f"ask {i}", max_tokens=1)
            extra = reply.model_extra or {}
            arm = extra["served_by"][2]
            served.append(arm)
            # chat-b's answers are the good ones.
            reward = 1.0 if arm == "chat-b" else 0.0
            r = http.post(
                f"{url}/feedback", json={"token": extra["feedback_token"], "reward": reward}
            )
            assert r.status_code == 200, r.text
    last = Counter(served[-20:])
    assert last["chat-b"] >= 15, Counter(served)


def test_streamed_llm_answers_carry_a_feedback_token(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
    raw = client.chat.completions.with_raw_response.create(
        model=APP, messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True
    )
    token = raw.headers["x-feedback-token"]
    assert raw.headers["x-served-by"].split(",")[-1] in ARMS
    assert [c for c in raw.parse() if c.choices]  # the stream itself arrives
    r = httpx.post(f"{url}/feedback", json={"token": token, "reward": 1.0}, timeout=30)
    assert r.status_code == 200, r.text
    replay = httpx.post(f"{url}/feedback", json={"token": token, "reward": 1.0}, timeout=30)
    assert replay.status_code == 409  # a token pays out once


def test_graph_page_redacts_engine_env(url: str) -> None:
    page = httpx.get(f"{url}/graph", timeout=30)
    assert page.status_code == 200 and "hf_not_for_your_eyes" not in page.text
    engines = [n["engine"] for n in page.json()["nodes"] if n.get("engine")]
    assert engines and all(e["env"] == {"HF_TOKEN": "***"} for e in engines)
