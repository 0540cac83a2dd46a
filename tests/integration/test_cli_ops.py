"""``servegraph status | experiments | control | bench`` as a user runs them (the installed
console script, in a subprocess) against a graph served on the session cluster."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from typing import Any

import httpx

from graphs import Graph, tensor
from tests.integration import helpers
from tests.support import ROOT, tool

NAME = "cli-ab"


def servegraph(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("servegraph"), *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _graph(state_dir: str) -> Any:
    g = Graph(NAME, inputs=[tensor("x", "FP32", [-1, 1])])
    arms = [
        g.model(
            name,
            runtime="python",
            model_class=helpers.Flaky,
            init_kwargs={"name": name},
            num_cpus=0,
        )
        for name in ("a", "b")
    ]
    g.entry = g.router("split", [(arms[0], 0.7), (arms[1], 0.3)], state={"dir": state_dir})
    return g.build()


def test_the_daily_commands_against_a_served_graph(
    state_dir: str, deploy: Callable[..., str], http: httpx.Client
) -> None:
    url = deploy(_graph(state_dir), NAME)

    # bench: zeros shaped as the graph's input, every request answered, a progress bar.
    done = servegraph("bench", url, "-n", "60", "-c", "4", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] == 60 and report["statuses"] == {"200": 60}
    assert report["latency_ms"]["p50"] > 0 and report["throughput_rps"] > 0
    assert "[####" in done.stderr and "60 requests, 0 errors" in done.stderr

    # experiments: the 60 requests, per arm, as JSON and as a table.
    done = servegraph("experiments", NAME, "--json")
    assert done.returncode == 0, done.stderr
    arms = json.loads(done.stdout)["routers"]["split"]["arms"]
    assert sum(a["requests"] for a in arms.values()) == 60
    done = servegraph("experiments", NAME)
    assert done.returncode == 0 and done.stdout.startswith("router split (weighted)"), done.stdout
    assert "reward [95% CI]" in done.stdout

    # control: the token from $SERVEGRAPH_CONTROL_TOKEN (the session's); the split changes.
    done = servegraph("control", NAME, "split", "weights", "--weights", "0.5", "0.5")
    assert done.returncode == 0, done.stderr
    assert "weights on router split" in done.stdout
    split = next(n for n in http.get(f"{url}/graph").json()["nodes"] if n["name"] == "split")
    assert split["state"]["weights"] == [0.5, 0.5]
    refused = servegraph(
        "control", NAME, "split", "pause", SERVEGRAPH_CONTROL_TOKEN="wrong-token-0000000000"
    )
    assert refused.returncode == 4 and "HTTP 401" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    unknown = servegraph("control", NAME, "nope", "reset", "--json")
    assert unknown.returncode == 4 and json.loads(unknown.stdout)["exit_code"] == 4

    # status: Serve's view (through the dashboard, with Ray's token) and where each node runs.
    done = servegraph("status", "--json")
    assert done.returncode == 0, done.stderr
    app = next(a for a in json.loads(done.stdout)["applications"] if a["name"] == NAME)
    assert app["status"] == "RUNNING" and app["route_prefix"] == f"/{NAME}"
    where = {n["name"]: n["deployment"] for n in app["nodes"]}
    assert where == {"split": "ingress", "a": "a", "b": "b"}
    assert all(app["deployments"][d]["running"] >= 1 for d in ("ingress", "a", "b"))
    text = servegraph("status").stdout
    assert f"{NAME}  RUNNING  /{NAME}" in text and "own deployment" in text
