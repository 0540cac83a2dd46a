"""A bandit router over two LLM arms learns from rewards posted to /feedback, streaming or not.

The app (``tests/llm/early.py``: template -> bandit router -> two arms sharing one engine,
which is given a credential in its environment that /graph must never show, every node in a
deployment of its own) is submitted by the session while
the integration tier runs; the A/B module's app is gone by the time these tests run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.llm.early import APP, ARMS, ENGINE, MAX_TOKENS
from tests.support import BASE_URL, delete_app, fuzz, wait_app_running

pytestmark = pytest.mark.llm


@pytest.fixture(scope="module")
def url(llm_bandit_submitted: None) -> Iterator[str]:
    wait_app_running(APP, timeout=300)
    yield f"{BASE_URL}/{APP}"
    delete_app(APP)


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
    assert raw.headers["x-served-by"].split(",")[2:] in ([arm, ENGINE] for arm in ARMS)
    assert [c for c in raw.parse() if c.choices]  # the stream itself arrives
    r = httpx.post(f"{url}/feedback", json={"token": token, "reward": 1.0}, timeout=30)
    assert r.status_code == 200, r.text
    replay = httpx.post(f"{url}/feedback", json={"token": token, "reward": 1.0}, timeout=30)
    assert replay.status_code == 409  # a token pays out once


def test_graph_page_redacts_engine_env(url: str) -> None:
    page = httpx.get(f"{url}/graph", timeout=30)
    assert page.status_code == 200 and "hf_not_for_your_eyes" not in page.text
    # fusion: none: the template and the router stream through handles here.
    assert set(page.json()["deployments"]) == {"ingress", "template", "split", *ARMS, ENGINE}
    engines = [n["engine"] for n in page.json()["nodes"] if n.get("engine")]
    assert engines and all(e["env"] == {"HF_TOKEN": "***"} for e in engines)


def test_openai_requests_over_the_graphs_max_tokens_get_400_naming_the_field(url: str) -> None:
    doc = httpx.get(f"{url}/openapi.json", timeout=30).json()
    body = doc["paths"]["/v1/completions"]["post"]["requestBody"]["content"]["application/json"]
    branches = body["schema"]["properties"]["max_tokens"]["anyOf"]
    (cap,) = [b["maximum"] for b in branches if b.get("type") == "integer"]
    assert cap == MAX_TOKENS
    r = httpx.post(
        f"{url}/v1/completions",
        json={"model": APP, "prompt": "x", "max_tokens": cap + 1},
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens", r.text


def test_schema_fuzzer_finds_every_answer_documented(url: str) -> None:
    fuzz(url)  # last here: the bandit's state is what the tests above left
