"""One Ray cluster per test session (started with the recommended switches, or reused); apps are
deleted after the tests that deploy them. Everything polls; nothing sleeps a fixed time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from graphs.cluster import cluster_env

os.environ.update(cluster_env())  # before Ray is imported: handles read the same switches

import httpx
import ray
from ray import serve

from graphs import cluster

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE_URL = "http://127.0.0.1:8000"
TEST_CLUSTER_ENV = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1"}


def wait_for(predicate: Callable[[], Any], timeout: float = 120, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:
            last = exc
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """A local cluster with 4 CPUs and 1 logical GPU (reused when one already runs)."""
    # Short ingress draining: tests delete apps often and nothing is in flight by then.
    started = cluster.start(num_cpus=4, num_gpus=1, extra_env=TEST_CLUSTER_ENV)
    ray.init(address="auto", logging_level="ERROR")
    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    yield
    ray.shutdown()
    if started:
        cluster.stop()


def app_status(name: str) -> str | None:
    app = serve.status().applications.get(name)
    return app.status if app else None


def wait_app_running(name: str, timeout: float = 180) -> None:
    def running() -> bool:
        status = app_status(name)
        if status == "DEPLOY_FAILED":
            raise AssertionError(f"app {name} failed: {serve.status().applications[name].message}")
        return status == "RUNNING"

    wait_for(running, timeout, f"app {name} RUNNING")


def serve_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run Ray's ``serve`` CLI as a user would (from the repo root, with RAY_AUTH_MODE set)."""
    serve_bin = os.path.join(os.path.dirname(sys.executable), "serve")
    return subprocess.run(
        [serve_bin, *args],
        cwd=ROOT,
        env=cluster_env(),
        text=True,
        capture_output=True,
        check=check,
        timeout=300,
    )


@pytest.fixture
def deploy(ray_cluster: None) -> Iterator[Callable[..., str]]:
    """``deploy(app, name)``: serve.run an Application at /<name>; deleted after the test."""
    names: list[str] = []

    def _deploy(app: Any, name: str, wait: bool = True) -> str:
        names.append(name)
        if wait:
            serve.run(app, name=name, route_prefix=f"/{name}")
        else:  # return once submitted, e.g. when a replica is meant to stay pending
            serve.api._run(app, name=name, route_prefix=f"/{name}", _blocking=False)
        return f"{BASE_URL}/{name}"

    yield _deploy
    for name in names:
        serve.delete(name)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client
