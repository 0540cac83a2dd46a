"""The cluster the README starts is authenticated, on a fresh machine and on one with a token.

These tests start their own cluster the README's way (``python -m graphs.cluster start``) with a
``HOME`` of their own, so they run before the session's cluster exists (the conftest orders them
first) and stop it after.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from graphs.cluster import port_open
from tests.support import ROOT

#: Run before every test that uses the session's cluster (see tests/conftest.py).
pytestmark = pytest.mark.own_cluster

PY = sys.executable


def _env(home: str) -> dict[str, str]:
    """A shell's environment on a machine whose home is ``home`` (no Ray variables set)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SERVEGRAPH_"))}
    env["HOME"] = home
    env["PATH"] = os.path.dirname(PY) + os.pathsep + env.get("PATH", "")
    return env


def _sh(
    command: str, env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def _refused_without_token(env: dict[str, str]) -> str:
    """Start a driver without the token; return what Ray said once it refused (the driver
    retries for a while, so it is stopped at the first refusal)."""
    env = {**env, "RAY_AUTH_MODE": "disabled"}
    code = "import ray; ray.init(address='127.0.0.1:6379'); print('CONNECTED', flush=True)"
    proc = subprocess.Popen(
        [PY, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen: list[str] = []
    deadline = time.monotonic() + 90
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "CONNECTED" in line:
                raise AssertionError("an unauthenticated driver connected: " + "".join(seen))
            if "InvalidAuthToken" in line or "Unauthenticated" in line:
                return line
            if time.monotonic() > deadline:
                break
    finally:
        proc.kill()
        proc.wait()
    raise AssertionError("no authentication refusal seen: " + "".join(seen[-20:]))


@pytest.fixture
def fresh_home(tmp_path: os.PathLike[str]) -> Iterator[str]:
    """A home folder without ``~/.ray``; the cluster started in it is stopped after."""
    for port in (6379, 8265):
        if port_open(port):
            pytest.fail(f"port {port} is taken: stop the running Ray cluster first")
    home = str(tmp_path)
    yield home
    _sh(f"{PY} -m graphs.cluster stop", _env(home))


def _check_dashboard_wants(token: str) -> None:
    """The dashboard refuses a request without ``token`` and answers one with it."""
    assert httpx.get("http://127.0.0.1:8265/api/version", timeout=10).status_code == 401
    ok = httpx.get(
        "http://127.0.0.1:8265/api/version",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert ok.status_code == 200


def _check_authenticated_cluster(home: str) -> None:
    env = _env(home)
    token_file = os.path.join(home, ".ray", "auth_token")
    with open(token_file) as f:
        token = f.read().strip()
    # The dashboard listens on 127.0.0.1 only and wants the token.
    _check_dashboard_wants(token)
    listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
    assert "127.0.0.1:8265" in listening and "0.0.0.0:8265" not in listening
    # A driver without the token is refused; the demo's closing hint works as printed.
    assert "InvalidAuthToken" in _refused_without_token(env)
    hint = _sh("export RAY_AUTH_MODE=token; serve status", env)
    assert hint.returncode == 0 and "applications" in hint.stdout, hint.stderr[-2000:]
    # So does the README's way of setting up a shell.
    readme = _sh(f'eval "$({PY} -m graphs.cluster env)"; serve status', env)
    assert readme.returncode == 0 and "applications" in readme.stdout, readme.stderr[-2000:]


def test_fresh_machine_gets_a_token_and_an_authenticated_cluster(fresh_home: str) -> None:
    token_file = os.path.join(fresh_home, ".ray", "auth_token")
    started = _sh(f"{PY} -m graphs.cluster start --num-cpus 1", _env(fresh_home))
    assert started.returncode == 0, started.stderr[-3000:]
    assert "token auth on" in started.stdout
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    _check_authenticated_cluster(fresh_home)


def test_machine_with_a_token_keeps_it(fresh_home: str) -> None:
    token_file = os.path.join(fresh_home, ".ray", "auth_token")
    os.makedirs(os.path.dirname(token_file))
    with open(token_file, "w") as f:
        f.write("a" * 64)
    started = _sh(f"{PY} -m graphs.cluster start --num-cpus 1", _env(fresh_home))
    assert started.returncode == 0, started.stderr[-3000:]
    with open(token_file) as f:
        assert f.read() == "a" * 64
    # The cluster uses that token (drivers and the serve CLI are checked on a fresh machine).
    _check_dashboard_wants("a" * 64)
