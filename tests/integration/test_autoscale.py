"""Our autoscaling policy live: replicas rise within seconds of a load step and fall after it,
with the per-node policy and with the graph-level (application) policy from a Serve config; the
controller's log shows which of the two made each change."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml
from ray import serve

from tests.support import BASE_URL, delete_app, serve_cli, serve_logs, wait_app_running, wait_for

GRAPH = {
    "name": "scaly",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "entry": ["prep", "slow"],
    "nodes": [
        {
            "name": "prep",
            "kind": "preprocess",
            "num_cpus": 0,
            "function": "graphs.examples.passthrough:identity",
            "autoscaling": {"min_replicas": 1, "max_replicas": 2},
        },
        {
            "name": "slow",
            "kind": "model",
            "runtime": "python",
            "num_cpus": 0,
            "model_class": "graphs.examples.passthrough:Sleep",
            "init_kwargs": {"seconds": 0.1},
            "max_ongoing_requests": 2,
            "autoscaling": {
                "slo_p95_ms": 300,
                "target_queue_per_replica": 2,
                "min_replicas": 1,
                "max_replicas": 4,
                "upscale_cooldown_s": 1,
                "downscale_cooldown_s": 3,
            },
        },
    ],
}


class Load:
    """``users`` closed-loop clients posting to the graph until stopped."""

    def __init__(self, url: str, users: int):
        self.url, self.users = url, users
        self.stop = threading.Event()
        self.ok = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=60) as client:

            async def user() -> None:
                while not self.stop.is_set():
                    r = await client.post(self.url, json={"inputs": {"x": [[1, 2, 3, 4]]}})
                    self.ok += r.status_code == 200

            await asyncio.gather(*[user() for _ in range(self.users)])

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def replicas(node: str) -> int:
    app = serve.status().applications.get("scaly")
    return sum(app.deployments[node].replica_states.values()) if app else 0


def controller_log() -> str:
    """Serve's controller log so far (where the policies log their changes); the controller
    writes ``controller_<pid>.log`` (``controller_build_*`` logs are its app builds)."""
    return serve_logs("controller_[0-9]*")


@pytest.fixture(params=["node", "graph"])
def scaly(
    request: pytest.FixtureRequest, serve_up: None, tmp_path: object
) -> Iterator[tuple[str, str]]:
    app = {
        "name": "scaly",
        "route_prefix": "/scaly",
        "import_path": "graphs.builder:build_app",
        "args": {"graph": GRAPH},
    }
    if request.param == "graph":
        app["autoscaling_policy"] = {"policy_function": "autoscale.serve_policy:graph_policy"}
    path = os.path.join(str(tmp_path), "scaly.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({"applications": [app]}, f)
    serve_cli("deploy", path)
    wait_app_running("scaly")
    yield request.param, f"{BASE_URL}/scaly/predict"
    delete_app("scaly")


def test_replicas_follow_a_load_step(scaly: tuple[str, str]) -> None:
    policy, url = scaly
    seen = len(controller_log())
    assert replicas("slow") == 1
    with Load(url, users=12) as load:
        # 12 users on a 100 ms node taking 2 at a time: ~6x the load one replica can take.
        wait_for(lambda: replicas("slow") >= 3, 30, "slow node to scale up")
        wait_for(lambda: load.ok > 50, 60, "requests served")
    # Load gone: back to min_replicas after the 3 s downscale cooldown.
    wait_for(lambda: replicas("slow") == 1, 90, "slow node to scale down")
    # The configured policy made the changes, and only it: the graph-level policy replaces the
    # per-node one rather than running beside it.
    changes = [line for line in controller_log()[seen:].splitlines() if "servegraph " in line]
    other = "node" if policy == "graph" else "graph"
    assert any(f"servegraph {policy} policy: scaly/slow 1 -> " in line for line in changes), changes
    assert any(f"{policy} policy: scaly/slow " in line and "-> 1 " in line for line in changes)
    assert not any(f"servegraph {other} policy:" in line for line in changes), changes


# --- scale to zero ------------------------------------------------------------------------------


def _zero_graph(name: str, timeout_s: float) -> dict[str, object]:
    """A one-node graph whose model node may scale to zero replicas."""
    return {
        "name": name,
        "timeout_s": timeout_s,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "entry": "lazy",
        "nodes": [
            {
                "name": "lazy",
                "kind": "model",
                "runtime": "python",
                "num_cpus": 0,
                "model_class": "graphs.examples.passthrough:Sleep",
                "init_kwargs": {"seconds": 0.01},
                "autoscaling": {"min_replicas": 0, "max_replicas": 1, "downscale_cooldown_s": 2},
            }
        ],
    }


def _replicas_of(app: str, node: str) -> int:
    status = serve.status().applications.get(app)
    return sum(status.deployments[node].replica_states.values()) if status else -1


@pytest.fixture
def zero_apps(serve_up: None, tmp_path: object) -> Iterator[dict[str, str]]:
    # "zero" waits up to 60 s for a cold start; "zero-tight" has a 1 s deadline.
    graphs = {"zero": _zero_graph("zero", 60.0), "zero-tight": _zero_graph("zero-tight", 1.0)}
    apps = [
        {
            "name": name,
            "route_prefix": f"/{name}",
            "import_path": "graphs.builder:build_app",
            "args": {"graph": graph},
        }
        for name, graph in graphs.items()
    ]
    path = os.path.join(str(tmp_path), "zero.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({"applications": apps}, f)
    serve_cli("deploy", path)
    for name in graphs:
        wait_app_running(name)
    yield {name: f"{BASE_URL}/{name}/predict" for name in graphs}
    delete_app(*graphs)


def test_an_idle_node_scales_to_zero_and_a_request_waits_for_its_cold_start(
    zero_apps: dict[str, str],
) -> None:
    for app in zero_apps:  # one replica at first; idle for the 2 s cooldown: none
        wait_for(lambda app=app: _replicas_of(app, "lazy") == 0, 60, f"{app} to scale to zero")
    body = {"inputs": {"x": [[1, 2, 3, 4]]}}
    # A deadline shorter than a cold start: the request waits at the caller, bounded by it,
    # and gets the graph's answer for a late node.
    started = time.monotonic()
    r = httpx.post(zero_apps["zero-tight"], json=body, timeout=30)
    late = time.monotonic() - started
    assert r.status_code == 504 and r.json()["node"] == "lazy", r.text
    assert late < 5.0
    # With room for it, the request waits while a replica starts, then is served.
    started = time.monotonic()
    r = httpx.post(zero_apps["zero"], json=body, timeout=90)
    cold = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert r.json()["served_by"] == ["lazy"]
    assert _replicas_of("zero", "lazy") == 1
    started = time.monotonic()
    assert httpx.post(zero_apps["zero"], json=body, timeout=30).status_code == 200
    warm = time.monotonic() - started
    print(f"scale to zero: cold start {cold:.2f} s, then {1000 * warm:.0f} ms warm")
    assert warm < cold
    # Idle again after serving: back to zero.
    wait_for(lambda: _replicas_of("zero", "lazy") == 0, 60, "zero to scale to zero again")
