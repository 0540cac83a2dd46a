"""Scenario 4: a two-node cluster on this machine; the worker node's raylet SIGKILLed while it
holds half the model replicas, then a worker node started again.

The head is the harness's (``ray start --head`` with ``--resources``); the worker node joins
it with ``ray start --address`` under a temp dir of its own. Where replicas may go is decided
by custom resources, set through the Serve config's ``deployments:`` (``ray_actor_options``),
as a user would in ``configs/*.yaml``: the head has ``chaos_head`` (the ingress needs it) and 2
``chaos_model_slot``, each worker node 2 ``chaos_model_slot``, and each of the model's 4
replicas takes one slot. So two replicas run per node, the two lost with the worker cannot be
rescheduled on the head (it has no slot left), and they come back on the worker node when one
joins again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from typing import Any

import _harness as h

from . import apps, faults
from .common import LEAD_MIN_S, Sampler, drive, fault_times, log, summary, url, verdict, warm

APP = "chaos_nodes"
HEAD_RESOURCE = "chaos_head"
SLOT = "chaos_model_slot"
SLOTS_PER_NODE = 2
GCS = f"{h.HOST}:6479"
#: The worker nodes' dashboard agents (the head's is on 6481).
AGENT_PORT_BASE = 6490
#: ``ray start`` arguments of the head (the harness adds its own).
HEAD_ARGS = [f"--resources={json.dumps({HEAD_RESOURCE: 100, SLOT: SLOTS_PER_NODE})}"]


class WorkerNodes:
    """Worker nodes started on this machine, one temp dir each (``<private dir>/w<n>``)."""

    def __init__(self) -> None:
        self.started = 0
        self.current: dict[str, Any] | None = None

    def start(self) -> dict[str, Any]:
        """``ray start --address`` a new worker node; its node id and raylet pid."""
        from graphs.cluster import _bin

        self.started += 1
        temp = os.path.join(h.private_dir(), f"w{self.started}")
        cmd = [
            _bin("ray"),
            "start",
            f"--address={GCS}",
            "--num-cpus=1",
            f"--resources={json.dumps({SLOT: SLOTS_PER_NODE})}",
            f"--temp-dir={temp}",
            f"--dashboard-agent-listen-port={AGENT_PORT_BASE + self.started}",
            "--disable-usage-stats",
        ]
        t0 = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"ray start (worker) failed: {done.stdout[-500:]}{done.stderr[-800:]}"
            )
        node = faults.wait_for(lambda: _node_of(temp), 60)
        if not node:
            raise RuntimeError(f"worker node under {temp} did not join")
        self.current = {
            "temp": temp,
            "node_id": node["NodeID"],
            "raylet_pid": _raylet_pid(temp),
            "start_s": round(time.monotonic() - t0, 1),
        }
        return dict(self.current)

    def kill_raylet(self) -> dict[str, Any]:
        """SIGKILL the current worker node's raylet."""
        assert self.current is not None
        at = time.monotonic()
        os.kill(int(self.current["raylet_pid"]), signal.SIGKILL)
        return {
            "node_id": self.current["node_id"][:8],
            "raylet_pid": self.current["raylet_pid"],
            "at": at,
        }


def _node_of(temp: str) -> dict[str, Any] | None:
    import ray

    for n in ray.nodes():
        if n.get("Alive") and temp in str(n.get("RayletSocketName", "")):
            return dict(n)
    return None


def _raylet_pid(temp: str) -> int:
    import psutil

    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if "raylet" in (p.info.get("name") or "") and temp in cmd:
            return int(p.info["pid"])
    raise RuntimeError(f"no raylet found for {temp}")


def _alive(node_id: str) -> bool | None:
    import ray

    for n in ray.nodes():
        if n["NodeID"] == node_id:
            return bool(n.get("Alive"))
    return None


def _placement(app: str = APP) -> dict[str, Any]:
    reps = faults.replicas(app, "model")
    return {
        "running": dict(
            Counter(str(r.get("node_id"))[:8] for r in reps if r["state"] == "RUNNING")
        ),
        "states": dict(Counter(r["state"] for r in reps)),
    }


def _timeline(samples: list[tuple[float, Any]], t0: float) -> list[dict[str, Any]]:
    """The placement samples where something changed (seconds after the load started)."""
    out: list[dict[str, Any]] = []
    for t, v in samples:
        if not out or {k: out[-1][k] for k in v} != v:
            out.append({"t_s": round(t - t0, 1), **v})
    return out


def deploy_with_config(app: str, pinned: bool) -> str:
    """Deploy scenario 4's Serve config (``serve deploy``'s path: the controller builds it)."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    config = apps.two_node_config(app, HEAD_RESOURCE, SLOT, pinned=pinned)
    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config))
    ready = faults.wait_for(lambda: _placement(app)["states"].get("RUNNING", 0) == 4, 180, 1.0)
    if not ready:
        raise RuntimeError(f"{app}: 4 model replicas not running: {_placement(app)}")
    h.wait_ready(url(app), apps.BODY, timeout_s=120)
    return url(app)


def _round(nodes: WorkerNodes, app: str, pinned: bool, spec: dict[str, Any]) -> dict[str, Any]:
    """Deploy, load, SIGKILL the current worker node's raylet, start a new worker node; what
    the clients saw and where the model's replicas ran meanwhile."""
    import ray

    seconds, conc = spec["seconds"], spec["concurrency"]
    first = dict(nodes.current or {})
    head = next(
        n["NodeID"] for n in ray.nodes() if n.get("Alive") and n["NodeID"] != first["node_id"]
    )
    target = deploy_with_config(app, pinned)
    before = _placement(app)
    warm(target, conc)
    lead = max(LEAD_MIN_S, 0.25 * seconds)
    restart_at = max(lead + 8.0, 0.5 * seconds)
    schedule = [
        (lead, "SIGKILL worker raylet", nodes.kill_raylet),
        (restart_at, "worker node started again", nodes.start),
    ]

    def on(node: dict[str, Any]) -> int:
        return int(_placement(app)["running"].get(str(node.get("node_id", ""))[:8], 0))

    with (
        Sampler(lambda: _placement(app), every_s=0.5) as placed,
        Sampler(lambda: {"alive": _alive(first["node_id"])}, every_s=0.5) as alive,
    ):
        records, done, t0 = drive(target, conc, seconds, schedule)
        second = dict(nodes.current or {})
        # Pinned, the lost replicas must come back there; unpinned, see whether they do.
        wanted = SLOTS_PER_NODE if pinned else 1
        back = faults.wait_for(lambda: on(second) >= wanted, 90 if pinned else 20, 1.0)
        time.sleep(1)
    kill = next((f for f in done if f["name"].startswith("SIGKILL")), {})
    restarted = next((f for f in done if f["name"].startswith("worker node")), {})
    dead_at = next((t for t, v in alive.samples if v.get("alive") is False), None)
    moved = [v for _, v in placed.samples if isinstance(v.get("running"), dict)]
    back_s = None
    if back and "at" in restarted:
        key = str(second.get("node_id", ""))[:8]
        back_s = next(
            (
                round(t - restarted["at"], 1)
                for t, v in placed.samples
                if t >= restarted["at"] and v.get("running", {}).get(key, 0) >= wanted
            ),
            None,
        )
    after = _placement(app)
    with contextlib.suppress(Exception):
        from ray import serve

        serve.delete(app)
    return {
        "ok": bool(kill) and "error" not in kill,
        "back": bool(back),
        "predict": summary(records, fault_times(done, ["SIGKILL worker raylet"]), t0),
        "faults": [
            {k: f.get(k) for k in ("name", "t_s", "node_id", "raylet_pid", "start_s", "error")}
            for f in done
        ],
        "observed": {
            "head_node": head[:8],
            "killed_worker_node": first["node_id"][:8],
            "new_worker_node": str(second.get("node_id", ""))[:8],
            "placement_before": before,
            "placement_after": after,
            "placement_timeline": _timeline(placed.samples, t0),
            "worker_marked_dead_after_s": round(dead_at - kill["at"], 1)
            if dead_at and kill.get("at")
            else None,
            "replicas_on_new_worker_after_s": back_s,
            "most_model_replicas_on_head": max(
                (v["running"].get(head[:8], 0) for v in moved), default=0
            ),
        },
    }


def kill_worker_node(spec: dict[str, Any]) -> dict[str, Any]:
    """Scenario 4 (runs in a cluster started with :data:`HEAD_ARGS` and ``HeadOnly`` proxies):
    the pinned graph (the verdict), then the same without the model's resources, for what a
    user who pins nothing gets."""
    nodes = WorkerNodes()
    first = nodes.start()
    log(f"worker node {first['node_id'][:8]} joined in {first['start_s']}s")
    pinned = _round(nodes, APP, True, spec)
    log(f"{APP}: the same without the model's resources")
    try:
        free = _round(nodes, f"{APP}_free", False, spec)
        unpinned: dict[str, Any] = {
            "sent": free["predict"]["sent"],
            "failed": free["predict"]["failed"],
            "failed_by_kind": free["predict"]["failed_by_kind"],
            "longest_error_window_s": free["predict"]["longest_error_window_s"],
            **free["observed"],
        }
    except Exception as exc:  # the variant is an observation; the verdict is the pinned run's
        unpinned = {"error": repr(exc)[:300]}
    s = pinned["predict"]
    checks = {
        "0 failed requests": s["failed"] == 0,
        "lost replicas not moved to the head": pinned["observed"]["most_model_replicas_on_head"]
        <= SLOTS_PER_NODE,
        "replicas back on the returned worker node": pinned["back"],
    }
    return {
        "target": "0 failed (retries); replicas come back on the node when it returns",
        "verdict": verdict(pinned["ok"] and all(checks.values())),
        "checks": checks,
        "predict": s,
        "faults": pinned["faults"],
        "observed": {**pinned["observed"], "unpinned_variant": unpinned},
    }
