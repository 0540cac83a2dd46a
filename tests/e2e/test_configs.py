"""``serve run`` of every shipped config, as a user runs it, against the session cluster: each
answers, and answers as its config says (its outputs, its router's policy, its autoscaling)."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from graphs.examples.digits import ensure_trained
from graphs.examples.tiny_llm import ensure_built
from tests.support import BASE_URL, ROOT, ensure_serve, serve_running, wait_for

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")))
#: A request each shipped graph must answer, by application name.
REQUESTS = {
    "digits": {"inputs": {"input": [[0.0] * 64]}},
    "passthrough": {"inputs": {"x": [1.0, 2.0]}},
    "llm-chat": {"inputs": {"prompt": ["Hello"]}},
    "llm-ab": {"inputs": {"prompt": ["Hello"]}},
}


def _router(url: str) -> dict[str, Any]:
    graph = httpx.get(f"{url}/graph", timeout=30).json()
    return next(n for n in graph["nodes"] if n["kind"] == "router")


def _deployments(url: str) -> dict[str, str]:
    """Node name -> the deployment it runs in, from /graph."""
    graph = httpx.get(f"{url}/graph", timeout=30).json()
    return {n["name"]: n["deployment"] for n in graph["nodes"]}


def _answers_digits(reply: dict[str, Any]) -> None:
    probabilities = np.asarray(reply["outputs"]["probabilities"])
    assert probabilities.shape == (1, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)
    assert reply["outputs"]["label"] == [int(probabilities.argmax())]
    assert reply["served_by"][:2] == ["scale", "split"]


def _digits(url: str, reply: dict[str, Any]) -> None:
    _answers_digits(reply)
    # The default placement: the scaler and the router fused into the ingress, every model in
    # a deployment of its own.
    graph = httpx.get(f"{url}/graph", timeout=30).json()
    where = {n["name"]: n["deployment"] for n in graph["nodes"]}
    assert where["scale"] == where["split"] == "ingress"
    models = [n["name"] for n in graph["nodes"] if n["kind"] == "model"]
    assert models and all(where[m] == m for m in models), where


def _fused(url: str, reply: dict[str, Any]) -> None:
    _answers_digits(reply)
    assert set(_deployments(url).values()) == {"ingress"}  # fusion: all


def _passthrough(url: str, reply: dict[str, Any]) -> None:
    assert reply["outputs"]["x"] == [1.0, 2.0]
    assert reply["served_by"] == ["hop0", "hop1", "hop2"]
    assert set(_deployments(url).values()) == {"ingress"}  # args.fusion: cheap


def _ab(url: str, reply: dict[str, Any]) -> None:
    _digits(url, reply)
    state = _router(url)["state"]
    assert state["policy"] == "ab" and state["sticky_key"] == {"header": "X-User-Id"}
    for user in ("ada", "bob", "cy"):
        arms = {
            tuple(
                httpx.post(
                    f"{url}/predict", json=REQUESTS["digits"], headers={"X-User-Id": user}
                ).json()["served_by"][2:]
            )
            for _ in range(6)
        }
        assert len(arms) == 1, (user, arms)  # sticky: one user, one arm
    # Drift is on against the shipped reference (too few requests here for a verdict).
    observe = httpx.get(f"{url}/graph", timeout=30).json()["observe"]
    assert observe["drift"]["reference"].endswith("digits_reference.npz")
    assert (
        observe["drift"]["state"] == "warming up" and observe["settings"]["drift"]["every_s"] == 10
    )


def _canary(url: str, reply: dict[str, Any]) -> None:
    _digits(url, reply)
    state = _router(url)["state"]
    assert state["policy"] == "canary"
    assert state["canary"]["history"][0]["action"] == "start"


def _shadow(url: str, reply: dict[str, Any]) -> None:
    _digits(url, reply)
    for _ in range(20):
        httpx.post(f"{url}/predict", json=REQUESTS["digits"], timeout=30)

    def mirrored() -> dict[str, Any] | None:
        state = _router(url)["state"]
        return state if state["shadow"]["mirrored"] > 0 else None

    state = wait_for(mirrored, 30, "shadow calls counted")
    assert state["policy"] in ("weighted", "ab")


def _bandit(url: str, reply: dict[str, Any]) -> None:
    _digits(url, reply)
    assert _router(url)["state"]["policy"] == "bandit"
    r = httpx.post(f"{url}/feedback", json={"token": reply["feedback_token"], "reward": 1.0})
    assert r.status_code == 200 and r.json()["applied"], r.text


def _autoscaled(url: str, reply: dict[str, Any]) -> None:
    _digits(url, reply)
    nodes = {n["name"]: n for n in httpx.get(f"{url}/graph", timeout=30).json()["nodes"]}
    assert nodes["logreg"]["autoscaling"]["max_replicas"] == 3
    assert nodes["both"]["autoscaling"]["slo_p95_ms"] == 150


def _text(url: str, reply: dict[str, Any]) -> None:
    text = reply["outputs"]["text"]
    assert isinstance(text, str) and text.strip(), reply  # the engine's completion


#: What each shipped config's graph must answer besides a 200, by config file.
CHECKS: dict[str, Callable[[str, dict[str, Any]], None]] = {
    "digits.yaml": _digits,
    "digits-ab.yaml": _ab,
    "digits-autoscale.yaml": _autoscaled,
    "digits-bandit.yaml": _bandit,
    "digits-canary.yaml": _canary,
    "digits-fused.yaml": _fused,
    "digits-shadow.yaml": _shadow,
    "passthrough.yaml": _passthrough,
    "llm-ab.yaml": _text,
    "llm-chat.yaml": _text,
}


#: Configs served by another module's tests (one deployment shared with them, not two).
SERVED_ELSEWHERE = {"llm-ab.yaml": "tests/llm/early.py"}  # for tests/llm/test_llm_graph.py
#: Configs run in the foreground and stopped with Ctrl-C, as a user runs a demo (so is
#: configs/llm-ab.yaml, by tests/llm/early.py); the others run with ``--non-blocking`` (no Serve
#: shutdown and restart between them).
FOREGROUND = {"passthrough.yaml"}


def test_every_config_has_a_request_and_a_check() -> None:
    names = {app["name"] for path in CONFIGS for app in yaml.safe_load(open(path))["applications"]}
    assert names == set(REQUESTS)
    assert {os.path.basename(p) for p in CONFIGS} == set(CHECKS)
    for config, module in SERVED_ELSEWHERE.items():
        assert f"configs/{config}" in open(os.path.join(ROOT, module)).read(), module


def _config(path: str) -> object:
    # LLM configs start vLLM engines: marked llm (skipped without vLLM).
    marks = [pytest.mark.llm] if os.path.basename(path).startswith("llm-") else []
    return pytest.param(path, marks=marks, id=os.path.basename(path))


def check_config(path: str) -> None:
    """Every app of the (running) config answers its request, and answers as CHECKS says."""
    with open(path) as f:
        apps = yaml.safe_load(f)["applications"]
    for app in apps:
        url = f"{BASE_URL}{app['route_prefix']}"

        def answers(url: str = url, name: str = app["name"]) -> httpx.Response | None:
            r = httpx.post(f"{url}/predict", json=REQUESTS[name], timeout=30)
            return r if r.status_code == 200 else None

        reply = wait_for(answers, 240, f"{app['name']} answering under serve run").json()
        CHECKS[os.path.basename(path)](url, reply)


@pytest.mark.parametrize(
    "path", [_config(p) for p in CONFIGS if os.path.basename(p) not in SERVED_ELSEWHERE]
)
def test_serve_run(path: str, ray_cluster: None) -> None:
    ensure_trained()
    ensure_built()
    ensure_serve()
    name = os.path.basename(path)
    with serve_running(os.path.relpath(path, ROOT), blocking=name in FOREGROUND):
        check_config(path)
