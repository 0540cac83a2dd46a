"""Fault injectors: SIGKILL a Serve replica or a router's state actor, damage a snapshot, and a
state folder that fills up or turns read-only.

Replicas are found through the Serve controller (``get_serve_details``: replica id, state, pid,
node), state actors through the GCS actor table (``ray._private.state.actors``: pid, state,
restarts); the harness's cluster runs without a dashboard, so ``ray.util.state`` is not
available. Every fault is stamped with ``time.monotonic()``, the load client's clock.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: Ray namespace of the router state actors (``routing.store.NAMESPACE``).
STATE_NAMESPACE = "servegraph"


def wait_for(cond: Callable[[], Any], timeout_s: float, every_s: float = 0.25) -> Any:
    """Poll ``cond`` until it returns something true; that value, or None at the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = cond()
            if value:
                return value
        time.sleep(every_s)
    return None


# --- Serve replicas ------------------------------------------------------------------------------


def replicas(app: str, deployment: str) -> list[dict[str, Any]]:
    """The replicas of one deployment as the Serve controller reports them (replica_id, state,
    pid, node_id, node_ip, actor_name), sorted by replica id."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    deployments = details["applications"][app]["deployments"]
    found = deployments[deployment]["replicas"]
    return sorted(found, key=lambda r: str(r["replica_id"]))


def running(app: str, deployment: str) -> list[dict[str, Any]]:
    return [r for r in replicas(app, deployment) if r["state"] == "RUNNING"]


def kill_replica(app: str, deployment: str, *, node_id: str | None = None) -> dict[str, Any]:
    """SIGKILL the process of one running replica (on ``node_id`` when given)."""
    candidates = [r for r in running(app, deployment) if node_id in (None, r.get("node_id"))]
    if not candidates:
        raise RuntimeError(f"{app}/{deployment}: no running replica to kill")
    victim = candidates[0]
    at = time.monotonic()
    os.kill(int(victim["pid"]), signal.SIGKILL)
    return {
        "deployment": deployment,
        "replica_id": victim["replica_id"],
        "pid": victim["pid"],
        "node_id": victim.get("node_id"),
        "at": at,
    }


def wait_replaced(
    app: str, deployment: str, gone: str, count: int, timeout_s: float = 90.0
) -> float | None:
    """Seconds until ``count`` replicas run again and none is ``gone``; None at the timeout."""
    t0 = time.monotonic()

    def back() -> bool:
        now = running(app, deployment)
        return len(now) >= count and all(r["replica_id"] != gone for r in now)

    return round(time.monotonic() - t0, 2) if wait_for(back, timeout_s, 0.5) else None


def placement(app: str, deployment: str) -> dict[str, int]:
    """Running replicas by node id (first 8 characters)."""
    out: dict[str, int] = {}
    for r in running(app, deployment):
        key = str(r.get("node_id"))[:8]
        out[key] = out.get(key, 0) + 1
    return out


# --- router state actors -------------------------------------------------------------------------


def state_actor(app: str, router: str) -> dict[str, Any]:
    """The router's state actor in the GCS actor table: actor id, pid, state, restarts."""
    import ray
    from ray._private import state as gcs_state

    handle = ray.get_actor(f"{app}.{router}", namespace=STATE_NAMESPACE)
    actor_id = handle._actor_id.hex()
    info = gcs_state.actors(actor_id)
    return {
        "actor_id": actor_id,
        "pid": info.get("Pid"),
        "state": info.get("State"),
        "restarts": info.get("NumRestarts"),
    }


def kill_state_actor(app: str, router: str) -> dict[str, Any]:
    """SIGKILL the state actor's process (Ray restarts it: ``max_restarts=-1``)."""
    before = state_actor(app, router)
    at = time.monotonic()
    os.kill(int(before["pid"]), signal.SIGKILL)
    return {**before, "at": at}


def wait_state_actor_back(app: str, router: str, old_pid: int, timeout_s: float = 60.0) -> Any:
    """The actor's table entry once it is alive in a new process; None at the timeout."""

    def back() -> dict[str, Any] | None:
        now = state_actor(app, router)
        return now if now["state"] == "ALIVE" and now["pid"] not in (None, 0, old_pid) else None

    return wait_for(back, timeout_s, 0.2)


def drop_state_actor(app: str, router: str) -> None:
    """End a scenario's detached state actor for good (it outlives ``serve.delete``)."""
    import ray

    with contextlib.suppress(Exception):
        ray.kill(ray.get_actor(f"{app}.{router}", namespace=STATE_NAMESPACE), no_restart=True)


def truncate(path: str, keep: float = 0.5) -> dict[str, int]:
    """Cut ``path`` to ``keep`` of its bytes (a write torn by a crash)."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))
    return {"bytes_before": size, "bytes_after": os.path.getsize(path)}


# --- log lines -----------------------------------------------------------------------------------


def logs_dir() -> str:
    """The private cluster's log folder (head node)."""
    import _harness as h

    return os.path.join(h.private_dir(), "ray", "session_latest", "logs")


def log_lines(needles: Sequence[str], limit: int = 12) -> list[str]:
    """Distinct lines holding one of ``needles`` in the cluster's worker and Serve logs, each
    with how often it occurred (``[n x]``), the most frequent first."""
    counts: Counter[str] = Counter()
    for pattern in ("worker-*.err", "worker-*.out", "serve/*.log"):
        for path in sorted(glob.glob(os.path.join(logs_dir(), pattern))):
            with contextlib.suppress(OSError), open(path, errors="replace") as f:
                for line in f:
                    if any(n in line for n in needles):
                        counts[line.strip()[:300]] += 1
    return [f"[{n} x] {line}" for line, n in counts.most_common(limit)]


def error_id_lines(failures: Sequence[Mapping[str, Any]], most: int = 3) -> list[str]:
    """The server log lines of the first ``most`` error ids the failed answers name (a 500
    says only "the server log has the details under error id X")."""
    ids: list[str] = []
    for f in failures:
        found = re.search(r"error id ([0-9a-f]+)", str(f.get("detail") or ""))
        if found and found.group(1) not in ids:
            ids.append(found.group(1))
    return [line for i in ids[:most] for line in log_lines([i], limit=2)]


# --- a state folder that fills up or turns read-only -------------------------------------------


class StateVolume:
    """A tiny tmpfs mounted at ``path``: the router's state folder. :meth:`fill` takes its last
    byte (ENOSPC), :meth:`read_only` makes it read-only; :meth:`restore` undoes either.

    Needs CAP_SYS_ADMIN (root outside a locked-down container); :meth:`mount` says why not.
    """

    def __init__(self, path: str, size: str = "4m"):
        self.path = path
        self.size = size
        self.mounted = False
        self.ro_mode: str | None = None  # how read_only() got there
        self._filler = os.path.join(path, "filler")

    def mount(self) -> str | None:
        """Mount it; None when done, else the reason it could not be."""
        os.makedirs(self.path, exist_ok=True)
        done = _mount(["-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", self.path])
        self.mounted = done is None
        return done

    def fill(self) -> int:
        """Write a filler file until the volume is full; bytes written."""
        written = 0
        with open(self._filler, "wb", buffering=0) as f:  # unbuffered: close cannot fail
            for size in (65536, 4096, 1):
                with contextlib.suppress(OSError):
                    while n := f.write(b"\0" * size) or 0:
                        written += n
        return written

    def read_only(self, app_folder: str) -> str:
        """Make the folder read-only: the volume remounted read-only when Linux allows it (not
        while a file on it is open for writing: EBUSY), else a read-only bind mount over the
        application's folder (files opened before keep writing to the volume beneath). Returns
        which of the two it did, and why."""
        refused = _mount(["-o", "remount,ro", self.path])
        if refused is None:
            self.ro_mode = "volume remounted read-only"
            return self.ro_mode
        bound = _mount(["--bind", "-o", "ro", app_folder, app_folder])
        if bound is not None:
            raise RuntimeError(f"cannot make {app_folder} read-only: {bound}")
        self._ro_bind = app_folder
        self.ro_mode = (
            f"read-only bind mount over {os.path.basename(app_folder)}/ (remount of the volume "
            f"refused: {refused.splitlines()[0]}): paths opened from now on are read-only, a "
            "file the actor already holds open for writing is not"
        )
        return self.ro_mode

    def restore(self) -> None:
        """Undo :meth:`fill` and :meth:`read_only`."""
        if getattr(self, "_ro_bind", None):
            _mount(["-u", self._ro_bind])
            self._ro_bind = None
        elif self.ro_mode:
            _mount(["-o", "remount,rw", self.path])
        self.ro_mode = None
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._filler)

    def unmount(self) -> None:
        if getattr(self, "_ro_bind", None):
            _mount(["-u", self._ro_bind])
        if self.mounted:
            _mount(["-u", "-l", self.path])
            self.mounted = False


def _mount(args: list[str]) -> str | None:
    """``mount ARGS`` (``-u``: ``umount``); None when it worked, else its message."""
    cmd = ["umount", *args[1:]] if args and args[0] == "-u" else ["mount", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{' '.join(cmd)}: {exc!r}"
    if done.returncode != 0:
        return f"{' '.join(cmd)}: {(done.stderr or done.stdout).strip()}"
    return None
