"""Shared pytest setup: one skip hook for the gpu/llm markers; the session's Ray cluster."""

from __future__ import annotations

import os
import tempfile

from tests.session import session_env

#: The session's own Ray token file, router state folder and control token, whatever ``~``
#: holds. Set when this file loads, before anything imports Ray (the product's packages
#: included): Ray reads its token settings once per process, when it is imported.
_SESSION_ROOT = tempfile.mkdtemp(prefix="servegraph-tests-")
os.environ.update(session_env(_SESSION_ROOT))

import importlib.util  # noqa: E402
import shutil  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import pytest  # noqa: E402

from tests.llm import bandit_app  # noqa: E402
from tests.support import (  # noqa: E402
    BASE_URL,
    TEST_CLUSTER_ENV,
    delete_app,
    ensure_serve,
    route_live,
    wait_for,
)


def _has_cuda() -> bool:
    return shutil.which("nvidia-smi") is not None


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_SESSION_ROOT, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons = {
        "gpu": None if _has_cuda() else "needs a CUDA GPU (nvidia-smi not found)",
        "llm": None
        if importlib.util.find_spec("vllm")
        else "needs vLLM (pip install -e '.[llm-cpu]')",
    }
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))
    # Tests that start a cluster of their own run first, before the session's cluster exists.
    items.sort(key=lambda item: "own_cluster" not in item.keywords)
    config.stash[_EARLY_LLM_BANDIT] = any(
        item.nodeid.startswith(bandit_app.MODULE) and not item.get_closest_marker("skip")
        for item in items
    )


#: Whether the LLM bandit tests run this session (their app is then submitted early).
_EARLY_LLM_BANDIT = pytest.StashKey[bool]()
#: Tests that measure latency under load: they run before the early app's engines start.
_QUIET_FIRST = ("tests/integration/test_autoscale.py",)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    """Once the session's cluster is up (and the latency-sensitive tests are done), submit the
    LLM bandit app: its two engines take about a minute of start-up, spent while other tests
    run instead of in the LLM tier's setup."""
    result = yield
    if (
        item.config.stash.get(_EARLY_LLM_BANDIT, False)
        and "ray_cluster" in getattr(item, "fixturenames", ())
        and not item.nodeid.startswith(_QUIET_FIRST)
    ):
        try:
            bandit_app.submit()
        except Exception as exc:  # the bandit tests submit it again and fail there
            warnings.warn(f"could not submit the LLM bandit app early: {exc!r}", stacklevel=1)
    return result


# --- one Ray cluster per session (integration and e2e tiers) ---------------------------------


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """A local cluster with 4 CPUs and 1 logical GPU, token auth on, and this session's own Ray
    token, router state folder and control token (see ``_SESSION_ROOT``)."""
    import ray

    from graphs import cluster

    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker would start a cluster of its own
        pytest.fail("the Ray tiers share one cluster: run them without -n (pytest-xdist)")
    busy = [port for port in (6379, 8000, 8265) if cluster.port_open(port)]
    if busy:
        pytest.exit(
            f"ports {busy} are taken: the tests start their own Ray cluster (own token and "
            "state folder) on ports 6379, 8000 and 8265; stop the running one first with "
            "`python -m graphs.cluster stop`",
            returncode=2,
        )
    cluster.start(num_cpus=4, num_gpus=1, extra_env=TEST_CLUSTER_ENV)
    try:
        ray.init(address="auto", logging_level="ERROR")
        yield
    finally:  # also when the driver could not connect: never leave the cluster running
        ray.shutdown()
        cluster.stop()


@pytest.fixture
def serve_up(ray_cluster: None) -> None:
    """Serve running on 127.0.0.1:8000 (started again if a test shut it down)."""
    ensure_serve()


@pytest.fixture
def deploy(serve_up: None) -> Iterator[Callable[..., str]]:
    """``deploy(app, name)``: serve.run an Application at /<name>; deleted after the test."""
    from ray import serve

    names: list[str] = []

    def _deploy(app: Any, name: str, wait: bool = True) -> str:
        names.append(name)
        url = f"{BASE_URL}/{name}"
        if not wait:  # return once submitted, e.g. when a replica is meant to stay pending
            serve.api._run(app, name=name, route_prefix=f"/{name}", _blocking=False)
            return url
        serve.run(app, name=name, route_prefix=f"/{name}")
        # The app is RUNNING; HAProxy picks up its route a moment later.
        wait_for(lambda: route_live(name), 60, f"route /{name}")
        return url

    yield _deploy
    for name in names:
        delete_app(name)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A client that opens a connection per request: HAProxy reloads gracefully, so a kept-alive
    connection stays on the process that had the routing table of its time, and a test that
    deploys a second app would reach the first app's world (a 404 for the new route)."""
    with httpx.Client(timeout=60, headers={"Connection": "close"}) as client:
        yield client
