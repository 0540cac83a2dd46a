"""One process per cluster configuration: the parent starts a script again as its worker.

Ray Serve reads its switches when its processes start, so every configuration runs in a fresh
Python process: :func:`run_worker` starts ``script --worker SPEC --worker-out PATH`` with the
environment :func:`~_harness.cluster.cluster_env` builds, in a private temp dir; the script's
``main`` hands over to its worker function through :func:`run_as_worker`, which writes the
result the parent reads back.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

from .cluster import START_S, cluster_env, kill_processes_mentioning
from .paths import REPO


def new_tmp_root(tag: str) -> str:
    """A short private directory: HAProxy's socket paths (``<dir>/h/<56-char node id>/
    metrics.sock``) must fit in 97 bytes."""
    root = tempfile.mkdtemp(prefix="lt", dir="/tmp")
    with open(os.path.join(root, "TAG"), "w", encoding="utf-8") as f:
        f.write(f"{tag} (pid {os.getpid()})\n")
    return root


def run_worker(
    script: str,
    spec: Mapping[str, Any],
    switches: Mapping[str, str] | None,
    *,
    tag: str,
    timeout_s: float,
    keep_logs: bool = False,
) -> dict[str, Any]:
    """Run ``script --worker SPEC`` in a fresh process with its own cluster; its JSON result.

    The worker's output goes to this process's stderr. On timeout or failure every process the
    worker left behind (its process group, and whatever names its private dir on its command
    line) is killed, and the dir is kept for its logs.
    """
    timeout_s += START_S  # budgets are for the work; starting the cluster comes on top
    tmp_root = new_tmp_root(tag)
    out_path = os.path.join(tmp_root, "result.json")
    env = cluster_env(tmp_root, switches)
    cmd = [sys.executable, script, "--worker", json.dumps(dict(spec)), "--worker-out", out_path]
    print(
        f"[harness] {tag}: starting worker (switches={dict(switches or {})}, tmp={tmp_root})",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=sys.stderr, stderr=sys.stderr, start_new_session=True
    )
    ok = False
    try:
        rc = proc.wait(timeout=timeout_s)
        ok = rc == 0 and os.path.exists(out_path)
        if not ok:
            raise RuntimeError(f"worker {tag} failed with exit code {rc}; logs in {tmp_root}")
        with open(out_path, encoding="utf-8") as f:
            result: dict[str, Any] = json.load(f)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"worker {tag} ran past {timeout_s:.0f}s; logs in {tmp_root}") from None
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        if not ok:
            # What a failed worker left in its process group (its cluster's processes, unless
            # something moved them) goes with it; the rest is found by the private dir.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        leftovers = kill_processes_mentioning(tmp_root)
        if leftovers:
            print(f"[harness] {tag}: killed {leftovers} leftover process(es)", file=sys.stderr)
        if ok and not keep_logs:
            shutil.rmtree(tmp_root, ignore_errors=True)
    print(f"[harness] {tag}: done in {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    return result


def write_result(path: str, result: Mapping[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)


def add_worker_args(parser: argparse.ArgumentParser) -> None:
    """The hidden flags :func:`run_worker` passes to a script it starts as a worker."""
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)


def run_as_worker(args: argparse.Namespace, worker: Callable[[dict[str, Any]], Any]) -> bool:
    """When started as a worker, run ``worker`` on its spec and write its result; else False."""
    if not getattr(args, "worker", None):
        return False
    write_result(args.worker_out, worker(json.loads(args.worker)))
    return True
