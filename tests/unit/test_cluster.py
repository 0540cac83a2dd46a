"""graphs.cluster without starting Ray: token files, client environments, printed exports."""

from __future__ import annotations

import os
import stat

import pytest

from graphs.cluster import (
    RECOMMENDED_ENV,
    REPLICA_ENV_KEYS,
    client_env,
    cluster_env,
    ensure_token,
    exports,
    is_running,
    replica_env,
    token_path,
)


def test_token_path_follows_home_and_the_override(tmp_path: os.PathLike[str]) -> None:
    home = str(tmp_path)
    assert token_path({"HOME": home}) == os.path.join(home, ".ray", "auth_token")
    assert token_path({"HOME": home, "RAY_AUTH_TOKEN_PATH": "/x/t"}) == "/x/t"


def test_ensure_token_creates_one_private_token_once(tmp_path: os.PathLike[str]) -> None:
    env = {"HOME": str(tmp_path)}
    assert ensure_token(env) is True
    path = token_path(env)
    with open(path) as f:
        token = f.read()
    assert len(token) == 64 and int(token, 16) >= 0  # 256 bits, hex, as Ray makes them
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ensure_token(env) is False
    with open(path) as f:
        assert f.read() == token  # an existing token is never replaced


def test_a_token_given_by_value_needs_no_file(tmp_path: os.PathLike[str]) -> None:
    env = {"HOME": str(tmp_path), "RAY_AUTH_TOKEN": "t" * 64}
    assert ensure_token(env) is False and not os.path.exists(token_path(env))


def test_clients_always_speak_token_mode_unless_told_otherwise() -> None:
    assert client_env({})["RAY_AUTH_MODE"] == "token"
    assert client_env({"RAY_AUTH_MODE": "disabled"})["RAY_AUTH_MODE"] == "disabled"
    env = cluster_env({"RAY_SERVE_ENABLE_HA_PROXY": "0"})
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "0"  # a user's choice wins
    assert all(env[k] == v for k, v in RECOMMENDED_ENV.items() if k != "RAY_SERVE_ENABLE_HA_PROXY")


def test_exports_are_what_a_shell_needs() -> None:
    assert exports({}) == "export RAY_AUTH_MODE=token"
    lines = exports({"RAY_AUTH_TOKEN_PATH": "/tmp/my token"}).splitlines()
    assert lines == ["export RAY_AUTH_MODE=token", "export RAY_AUTH_TOKEN_PATH='/tmp/my token'"]


def test_is_running_answers_at_once_on_a_free_port() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert is_running(port) is False


def test_replica_switches_left_unset_go_into_every_deployments_runtime_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from graphs import compile_graph, parse_graph

    graph = {
        "name": "env",
        "fusion": "none",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
        "entry": "p",
        "nodes": [
            {"name": "p", "kind": "preprocess", "function": "graphs.examples.passthrough:identity"}
        ],
    }
    for key in REPLICA_ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    # The cluster (or the application's runtime_env) sets one: only the other is added.
    monkeypatch.setenv(REPLICA_ENV_KEYS[0], "1")
    assert replica_env() == {REPLICA_ENV_KEYS[1]: RECOMMENDED_ENV[REPLICA_ENV_KEYS[1]]}
    monkeypatch.delenv(REPLICA_ENV_KEYS[0])
    app = compile_graph(parse_graph(graph))
    ingress = app._bound_deployment
    node = ingress.init_args[1]["p"]._bound_deployment
    for d in (ingress, node):
        env = d.ray_actor_options["runtime_env"]["env_vars"]
        assert (
            env
            == {k: RECOMMENDED_ENV[k] for k in REPLICA_ENV_KEYS}
            == {
                "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
                "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
            }
        )
    # Set where the graph is built (as on clusters that `python -m graphs.cluster start` starts):
    # nothing is added, and replicas inherit the cluster's values.
    for key in REPLICA_ENV_KEYS:
        monkeypatch.setenv(key, RECOMMENDED_ENV[key])
    app = compile_graph(parse_graph(graph))
    assert "runtime_env" not in app._bound_deployment.ray_actor_options
