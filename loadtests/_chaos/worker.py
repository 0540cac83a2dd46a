"""The worker side: the scenarios in a private cluster (scenario 4 in a two-node one of its own)."""

from __future__ import annotations

import os
import subprocess
import traceback
from collections.abc import Callable
from typing import Any

import _harness as h

from . import serving, state, twonode
from .common import log

#: Scenario number -> (title, function). Scenario 4 needs a cluster of its own.
SCENARIOS: dict[int, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    1: ("Kill one replica of each node kind (2 replicas each)", serving.kill_each_kind),
    2: ("Kill one of 2 ingress replicas", serving.kill_ingress),
    3: ("Kill the router's state actor during a bandit run", state.kill_state_actor),
    4: ("Two-node cluster: SIGKILL the worker node's raylet", twonode.kill_worker_node),
    5: ("A model that hangs", serving.hang),
    6: ("Router state folder full / read-only mid-run", state.state_folder_fails),
    7: ("Snapshot truncated between restarts", state.truncated_snapshot),
}
TWO_NODE = {4}


def _git(root: str, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", root, *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return done.stdout.strip()


def product() -> dict[str, Any]:
    """Which product code the replicas imported: the checkout ``graphs`` comes from, its commit,
    and the product files that differ from it (a checkout others are working in)."""
    import graphs

    root = os.path.dirname(os.path.dirname(os.path.abspath(graphs.__file__)))
    status = _git(root, "status", "--porcelain", "--", "graphs", "nodes", "routing", "autoscale")
    return {
        "checkout": root,
        "commit": _git(root, "log", "-1", "--format=%h %ad %s", "--date=iso")[:160],
        "uncommitted": [line[3:] for line in status.splitlines() if line.strip()],
    }


def replica_imports() -> str:
    """Where a Ray worker of this cluster imports ``routing`` from (what the replicas run)."""
    import ray

    def where() -> str:
        import routing

        return os.path.dirname(os.path.dirname(os.path.abspath(routing.__file__)))

    try:
        return str(ray.get(ray.remote(num_cpus=0)(where).remote(), timeout=60))
    except Exception as exc:  # reported, not fatal
        return f"? ({exc!r})"[:200]


def run_one(number: int, spec: dict[str, Any]) -> dict[str, Any]:
    title, fn = SCENARIOS[number]
    log(f"scenario {number}: {title}")
    try:
        result = fn(spec)
    except Exception as exc:  # one broken scenario must not hide the others' figures
        traceback.print_exc()
        result = {"verdict": "ERROR", "error": f"{exc!r}"[:1000]}
    log(f"scenario {number}: {result.get('verdict')}")
    return {"title": title, **result}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``spec["scenarios"]`` in one fresh cluster (two nodes for scenario 4)."""
    from routing.state import STATE_DIR_ENV

    # Routers without a state dir of their own keep theirs here, never in ~/.servegraph.
    os.environ[STATE_DIR_ENV] = os.path.join(h.private_dir(), "state")
    wanted = [int(n) for n in spec["scenarios"]]
    two_node = any(n in TWO_NODE for n in wanted)
    options: dict[str, Any] = (
        {"extra_args": twonode.HEAD_ARGS, "proxy_location": "HeadOnly"} if two_node else {}
    )
    # Ray puts the driver's working directory first on its workers' sys.path: started in a
    # checkout (the harness's cwd is the repository), replicas would import that checkout's
    # graphs/nodes/routing, not the installed product the driver imports.
    os.chdir(h.private_dir())
    out: dict[str, Any] = {"scenarios": {}, "product": product()}
    with h.ray_cluster(num_cpus=2, **options):
        out["product"]["replicas_import"] = replica_imports()
        for n in wanted:
            out["scenarios"][str(n)] = run_one(n, spec)
        out["machine"] = h.machine_info()
    return out
