"""Deploying LLM graphs for the LLM tier: one deployment per module (engines start in ~60 s)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from graphs.examples.tiny_llm import ensure_built
from tests.support import BASE_URL, delete_app, ensure_serve, route_live, wait_for


@pytest.fixture(scope="module")
def deploy_llm_graph(ray_cluster: None) -> Iterator[Callable[[Any, str], str]]:
    """``deploy(graph, name)``: serve.run the graph (a mapping or a YAML path) at /<name>; the
    apps are deleted when the module ends."""
    from ray import serve

    from graphs import build_app

    names: list[str] = []

    def _deploy(graph: Any, name: str) -> str:
        ensure_serve()
        ensure_built()
        names.append(name)
        serve.run(build_app({"graph": graph}), name=name, route_prefix=f"/{name}")
        wait_for(lambda: route_live(name), 60, f"route /{name}")
        return f"{BASE_URL}/{name}"

    yield _deploy
    for name in names:
        delete_app(name)
