"""The LLM bandit app of ``test_llm_bandit.py``: the A/B demo graph with its router turned into a
Thompson-sampling bandit, each engine given a credential that /graph must never show.

Its two engines take about a minute to start, so the session submits the app early
(:func:`submit`, from ``tests/conftest.py``) and runs other tests meanwhile; the test module
waits for it to be up and deletes it when done.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

APP = "llm-bandit"
ARMS = ("chat-a", "chat-b")
#: The test module that uses the app (its tests selected: the app is submitted early).
MODULE = "tests/llm/test_llm_bandit.py"


def bandit_graph() -> dict[str, Any]:
    """The A/B demo graph with its router turned into a Thompson-sampling bandit."""
    from graphs.validate import PACKAGE_ROOT

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


_submitted: list[bool] = []


def submit() -> None:
    """Submit the app at /llm-bandit once per session and return at once (its engines start
    meanwhile)."""
    if _submitted:
        return
    from ray import serve

    from graphs import build_app
    from graphs.examples.tiny_llm import ensure_built
    from tests.support import ensure_serve

    ensure_serve()
    ensure_built()
    app = build_app({"graph": bandit_graph()})
    serve.api._run(app, name=APP, route_prefix=f"/{APP}", _blocking=False)
    _submitted.append(True)
