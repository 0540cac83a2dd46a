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

from tests.llm import early  # noqa: E402
from tests.support import (  # noqa: E402
    BASE_URL,
    TEST_CLUSTER_ENV,
    delete_app,
    ensure_serve,
    wait_app_running,
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
    # Tests that start a cluster of their own run first, before the session's cluster exists;
    # then the tiers in the order given, and in the integration tier the modules that deploy
    # Serve configs first (see _early_starts).
    tiers: dict[str, int] = {}
    for i, item in enumerate(items):
        tiers.setdefault(os.path.dirname(_module(item)), i)
    items.sort(
        key=lambda item: (
            "own_cluster" not in item.keywords,
            tiers[os.path.dirname(_module(item))],
            _module(item).startswith("tests/integration/")
            and _module(item) not in _CONFIG_DEPLOYERS,
        )
    )
    config.stash[_EARLY] = _early_starts(items)


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::")[0]


#: Modules that deploy Serve configs (``serve deploy`` / ``serve run``): each such deploy replaces
#: the config-deployed apps already running, configs/llm-ab.yaml's included.
_CONFIG_DEPLOYERS = {
    "tests/integration/test_autoscale.py",
    "tests/integration/test_digits.py",
    "tests/integration/test_gpu.py",
    "tests/integration/test_serve_cli.py",
    "tests/e2e/test_configs.py",
    "tests/e2e/test_locust.py",
    "tests/e2e/test_readme.py",
}
#: Modules that time things under load or on cold handles: nothing starts early during them.
_QUIET = {
    "tests/integration/test_admission.py",
    "tests/integration/test_autoscale.py",
    "tests/integration/test_failures.py",
    "tests/integration/test_graphs.py",
}
#: Per session: the item indexes [from, to) at which each early app may start (absent: it
#: does not start early); ``to`` is its module's first test.
_EARLY = pytest.StashKey[dict[str, tuple[int, int]]]()


def _early_starts(items: list[pytest.Item]) -> dict[str, tuple[int, int]]:
    """The LLM tier's two apps take about a minute each to start (vLLM engines): they start
    while earlier tests run. The bandit app (imperative) at the first Ray test; the llm-ab config
    (``serve run``) only after the last config deploy before its module."""
    ray_tests = [i for i, item in enumerate(items) if "ray_cluster" in _fixtures(item)]
    if not ray_tests:
        return {}
    starts: dict[str, tuple[int, int]] = {}
    bandit = _first_selected(items, early.MODULE)
    if bandit is not None:
        starts["bandit"] = (ray_tests[0], bandit)
    ab = _first_selected(items, early.AB_MODULE)
    if ab is not None:
        deploys = [i for i in range(ab) if _module(items[i]) in _CONFIG_DEPLOYERS]
        starts["ab"] = (max(deploys, default=-1) + 1, ab)
    return starts


def _first_selected(items: list[pytest.Item], module: str) -> int | None:
    """The index of ``module``'s first test that is not skipped, if any."""
    return next(
        (
            i
            for i, item in enumerate(items)
            if _module(item) == module and not item.get_closest_marker("skip")
        ),
        None,
    )


def _fixtures(item: pytest.Item) -> tuple[str, ...]:
    return tuple(getattr(item, "fixturenames", ()))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    """Start the LLM tier's apps early (see :func:`_early_starts`) once the session's cluster
    is up, except during the modules in ``_QUIET``: their engines' minute of start-up is spent
    while other tests run instead of in the LLM tier."""
    result = yield
    starts = item.config.stash.get(_EARLY, {})
    if starts and "ray_cluster" in _fixtures(item) and _module(item) not in _QUIET:
        index = item.session.items.index(item)
        for name, start in (("bandit", early.submit), ("ab", early.start_ab)):
            first, until = starts.get(name, (0, 0))
            if first <= index < until:
                try:
                    start()
                except Exception as exc:  # their tests start them again and fail there
                    message = f"could not start the LLM {name} app early: {exc!r}"
                    warnings.warn(message, stacklevel=1)
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
    _quick_replica_shutdown()
    try:
        ray.init(address="auto", logging_level="ERROR")
        yield
    finally:  # also when the driver could not connect: never leave the cluster running
        early.stop_ab()
        ray.shutdown()
        cluster.stop()


def _quick_replica_shutdown() -> None:
    """A stopping replica of an app this process deploys looks for unfinished requests every
    0.1 s, instead of first sleeping Serve's default ``graceful_shutdown_wait_loop_s`` (2 s):
    the tests delete an app every few seconds, with nothing in flight, and this was a third of
    each delete. The drain itself is Serve's own (it still waits for every request in flight);
    apps deployed from config files (``serve run``/``serve deploy``) keep Serve's default."""
    from ray.serve._private.config import DeploymentConfig

    DeploymentConfig.model_fields["graceful_shutdown_wait_loop_s"].default = 0.1
    DeploymentConfig.model_rebuild(force=True)


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
        # Submitted, then polled every 0.25 s (serve.run polls once a second).
        serve.api._run(app, name=name, route_prefix=f"/{name}", _blocking=False)
        if wait:  # else return once submitted, e.g. when a replica is meant to stay pending
            wait_app_running(name)  # RUNNING, and HAProxy routes /<name>
        return url

    yield _deploy
    delete_app(*names)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A client that opens a connection per request: HAProxy reloads gracefully, so a kept-alive
    connection stays on the process that had the routing table of its time, and a test that
    deploys a second app would reach the first app's world (a 404 for the new route)."""
    with httpx.Client(timeout=60, headers={"Connection": "close"}) as client:
        yield client
