"""``serve run`` of every shipped config, as a user runs it, against the session cluster."""

from __future__ import annotations

import glob
import os
import signal
import subprocess

import httpx
import numpy as np
import pytest
import yaml

from graphs.cluster import client_env
from graphs.examples.digits import ensure_trained
from graphs.examples.tiny_llm import ensure_built
from tests.support import BASE_URL, ROOT, ensure_serve, tool, wait_for

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")))
#: A request each shipped graph must answer, by application name.
REQUESTS = {
    "digits": {"inputs": {"input": [[0.0] * 64]}},
    "passthrough": {"inputs": {"x": [1.0, 2.0]}},
    "llm-chat": {"inputs": {"prompt": ["Hello"]}},
    "llm-ab": {"inputs": {"prompt": ["Hello"]}},
}


def test_every_config_has_a_request() -> None:
    names = {app["name"] for path in CONFIGS for app in yaml.safe_load(open(path))["applications"]}
    assert names == set(REQUESTS)


def _config(path: str) -> object:
    # LLM configs start vLLM engines: marked llm (skipped without vLLM).
    marks = [pytest.mark.llm] if os.path.basename(path).startswith("llm-") else []
    return pytest.param(path, marks=marks, id=os.path.basename(path))


@pytest.mark.parametrize("path", [_config(p) for p in CONFIGS])
def test_serve_run(path: str, ray_cluster: None) -> None:
    ensure_trained()
    ensure_built()
    with open(path) as f:
        apps = yaml.safe_load(f)["applications"]
    proc = subprocess.Popen(
        [tool("serve"), "run", os.path.relpath(path, ROOT)],
        cwd=ROOT,
        env=client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for app in apps:
            url = f"{BASE_URL}{app['route_prefix']}"

            def answers(url: str = url, name: str = app["name"]) -> httpx.Response | None:
                r = httpx.post(f"{url}/predict", json=REQUESTS[name], timeout=30)
                return r if r.status_code == 200 else None

            reply = wait_for(answers, 240, f"{app['name']} answering under serve run").json()
            assert reply["served_by"]
            assert np.asarray(next(iter(reply["outputs"].values()))).size > 0
    finally:
        proc.send_signal(signal.SIGINT)  # serve run shuts Serve down on Ctrl-C
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        ensure_serve()
    assert "Running config file" in out, out[-2000:]
