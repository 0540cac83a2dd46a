"""The LLM tier's two apps, started early: their vLLM engines take about a minute to start, so
the session starts them while the integration tier runs (see ``tests/conftest.py``) and the LLM
tests wait for them to be up.

- The bandit app of ``test_llm_bandit.py``: the A/B demo graph with its router turned into a
  Thompson-sampling bandit whose two arms share one engine (each arm a pass-through node of its
  own, then the engine: a node used twice is one instance, and one engine starts instead of
  two), the engine given a credential that /graph must never show, every node in a deployment
  of its own (``fusion: none``: ``llm-ab`` runs its template and router fused in the ingress,
  so the LLM tier streams through both placements), OpenAI requests capped at
  :data:`MAX_TOKENS` tokens (``limits.max_tokens``: the schema fuzzer's cases stay short);
  submitted with
  ``serve.run`` (an imperative app, which the ``serve deploy`` of a config leaves alone),
  deleted by its module.
- ``configs/llm-ab.yaml`` under ``serve run --non-blocking``, as a user starts it, for
  ``test_llm_graph.py`` (the e2e check of that config). A config deployed with ``serve
  deploy``/``serve run`` replaces the declarative apps already running, so it starts only once
  the tests that deploy configs have run; its module deletes it, before the e2e tier deploys
  more configs.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import yaml

APP = "llm-bandit"
#: The bandit's arms: each a pass-through node named after the arm, then the one engine.
ARMS = ("chat-a", "chat-b")
ENGINE = "chat"
#: The test module that uses the bandit app (its tests selected: the app starts early).
MODULE = "tests/llm/test_llm_bandit.py"
#: The bandit app's ``limits.max_tokens``: what the schema fuzzer may ask its engine for.
MAX_TOKENS = 16
AB_CONFIG = "configs/llm-ab.yaml"
#: The test module that uses configs/llm-ab.yaml.
AB_MODULE = "tests/llm/test_llm_graph.py"
#: The apps started once per session (others' fixtures must leave their state actors alone).
SESSION_APPS = (APP, "llm-ab")


def bandit_graph() -> dict[str, Any]:
    """The A/B demo graph with its router turned into a Thompson-sampling bandit over two arms
    that share one engine, unfused."""
    from graphs.validate import PACKAGE_ROOT

    with open(os.path.join(PACKAGE_ROOT, "graphs", "examples", "llm_ab.yaml")) as f:
        graph = yaml.safe_load(f)
    graph["name"] = APP
    graph["fusion"] = "none"
    graph["limits"] = {"max_tokens": MAX_TOKENS}
    engine = next(node for node in graph["nodes"] if node.get("runtime") == "vllm")
    engine = {
        **engine,
        "name": ENGINE,
        "engine": {**engine["engine"], "env": {"HF_TOKEN": "hf_not_for_your_eyes"}},
    }
    arms = [
        {"name": arm, "kind": "preprocess", "function": "graphs.examples.passthrough:identity"}
        for arm in ARMS
    ]
    router = {
        "name": "split",
        "kind": "router",
        "seed": 0,
        "bandit": {"algorithm": "thompson_beta"},
        "arms": [{"target": [arm, ENGINE]} for arm in ARMS],
    }
    graph["nodes"] = [
        node for node in graph["nodes"] if node["name"] not in ("split", "chat-a", "chat-b")
    ]
    graph["nodes"] += [router, *arms, engine]
    return dict(graph)


_submitted: list[bool] = []
_ab_started: list[bool] = []
_ab_running = contextlib.ExitStack()


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


def start_ab() -> None:
    """``serve run --non-blocking configs/llm-ab.yaml``, once per session, until :func:`stop_ab`
    deletes its app; returns once the config is submitted (the engines start meanwhile). The
    foreground ``serve run`` and its Ctrl-C are tested on ``configs/passthrough.yaml``: here
    they would cost a Serve shutdown and restart."""
    if _ab_started:
        return
    from graphs.examples.tiny_llm import ensure_built
    from tests.support import ensure_serve, serve_running

    ensure_serve()
    ensure_built()
    _ab_running.enter_context(serve_running(AB_CONFIG, blocking=False))
    _ab_started.append(True)


def stop_ab() -> None:
    """Delete the app :func:`start_ab` deployed."""
    _ab_running.close()
