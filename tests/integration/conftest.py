"""Fixtures of the integration tier (the session's cluster is in the root conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import ray

from routing.store import NAMESPACE
from tests.llm.early import SESSION_APPS


@pytest.fixture
def state_dir(tmp_path: Any) -> Iterator[str]:
    """A fresh snapshot folder; the router state actors the test created are removed after
    (not those of the session's LLM apps, which may start while the test runs: their state
    actors are named ``<app>.<router>``)."""
    before = {a.name for a in _state_actors()}
    yield str(tmp_path)
    for actor in _state_actors():
        if actor.name not in before and actor.name.split(".")[0] not in SESSION_APPS:
            try:
                ray.kill(ray.get_actor(actor.name, namespace=NAMESPACE), no_restart=True)
            except ValueError:  # gone since it was listed (the state API lags a little)
                pass


def _state_actors() -> list[Any]:
    from ray.util.state import list_actors

    return [
        a
        for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
        if a.class_name == "RouterStateActor"
    ]
