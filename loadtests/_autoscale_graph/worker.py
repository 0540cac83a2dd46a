"""The worker: one live cluster, the graph deployed from a Serve config with the graph-level
policy, the step load, every node's replicas and requests sampled meanwhile."""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from typing import Any

import _harness as h
from _autoscale_live.worker import Sampler, controller_log_lines, run_step_load

from .scenario import APP, BODY, NODES, serve_config

#: ``servegraph graph policy: <app>/<node> a -> b replicas (reason)``
#: Every how many samples the nodes' rates are read from ``GET /<graph>/live``.
LIVE_EVERY = 2
DECISION = re.compile(r"servegraph graph policy: ([^/\s]+)/(\S+) (\d+) -> (\d+) replicas \((.*)\)")


class GraphSampler(Sampler):
    """Every ``SAMPLE_EVERY_S``: each node's running replicas (``serve.status()``), its target
    (the controller's instance details) and its requests in flight and waiting, as the
    controller aggregates them for the policy (running + queued at the callers' handles); once
    a second, ``GET /<graph>/live``'s rates."""

    def sample(self, tick: int) -> dict[str, Any]:
        import ray
        from ray import serve
        from ray.serve._private.common import DeploymentID
        from ray.serve.context import _get_global_client

        row: dict[str, Any] = {}
        controller = _get_global_client()._controller
        ongoing = [
            controller._get_total_num_requests_for_deployment_for_testing.remote(
                DeploymentID(name=n, app_name=self.app)
            )
            for n in NODES
        ]
        details = controller.get_serve_instance_details.remote()
        try:
            deps = serve.status().applications[self.app].deployments
            for n in NODES:
                states = h.replica_counts(deps[n])
                row[n] = {
                    "running": states.get("RUNNING", 0),
                    "starting": states.get("STARTING", 0),
                }
        except Exception as exc:  # keep sampling; a missed sample is a gap
            self.errors.append(f"{time.time():.1f} status: {exc!r}")
        try:
            inst = ray.get(details, timeout=5)["applications"][self.app]["deployments"]
            for n in NODES:
                row.setdefault(n, {})["target"] = int(inst[n]["target_num_replicas"])
        except Exception as exc:
            self.errors.append(f"{time.time():.1f} details: {exc!r}")
        try:
            for n, v in zip(NODES, ray.get(ongoing, timeout=5), strict=True):
                row.setdefault(n, {})["ongoing"] = round(float(v or 0.0), 2)
        except Exception as exc:
            self.errors.append(f"{time.time():.1f} ongoing: {exc!r}")
        if tick % LIVE_EVERY == 0:  # /live costs a call to every node: once a second
            row["rps"] = self._live()
        return row

    def _live(self) -> dict[str, Any]:
        """Each node's arrival rate (req/s), p95 and service time (ms), as ``GET
        /<graph>/live`` gives them: one replica's figures, its rate times the running replicas."""
        import httpx

        try:
            body = httpx.get(f"{h.BASE_URL}/{self.app}/live", timeout=2).json()
        except Exception as exc:
            self.errors.append(f"{time.time():.1f} live: {exc!r}")
            return {}
        out: dict[str, Any] = {}
        for n in NODES:
            fig = body.get("nodes", {}).get(n) or {"error": "missing"}
            if "error" not in fig:
                out[n] = round(float(fig.get("rps") or 0.0), 1)
                for key in ("p95_ms", "service_ms"):
                    if fig.get(key) is not None:
                        out[f"{n}_{key}"] = round(float(fig[key]), 1)
        return out


def decisions(app: str, since: float) -> tuple[list[dict[str, Any]], list[str]]:
    """The graph policy's replica changes for ``app`` from Serve's controller log, and any
    policy errors logged there."""
    log = controller_log_lines(app, since)
    out = []
    for ts, line in log["decisions"]:
        m = DECISION.search(line)
        if m and m.group(1) == app and ts is not None:
            out.append(
                {
                    "ts": ts,
                    "node": m.group(2),
                    "from": int(m.group(3)),
                    "to": int(m.group(4)),
                    "reason": m.group(5),
                    "line": line,
                }
            )
    return out, log["errors"]


def _wait_running(app: str, timeout_s: float) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    status: Any = None
    while time.monotonic() < deadline:
        status = serve.status().applications.get(app)
        if status is not None and str(getattr(status.status, "value", status.status)) == "RUNNING":
            return
        time.sleep(0.5)
    raise RuntimeError(f"{app} not RUNNING after {timeout_s:.0f}s: {status}")


def run_graph(spec: dict[str, Any], locust: str) -> dict[str, Any]:
    """Deploy the Serve config (``serve deploy``'s path: the controller builds the app), drive
    the step load, sample the nodes."""
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    tmp_root = h.private_dir()
    t_deploy = time.time()
    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(serve_config(spec)))
    _wait_running(APP, 180)
    h.wait_ready(f"{h.BASE_URL}/{APP}/predict", BODY, timeout_s=120)
    print(f"[autoscale_graph] ready in {time.time() - t_deploy:.0f}s", file=sys.stderr)
    time.sleep(3)  # the warm-up requests leave the rate windows before the load starts

    prefix = os.path.join(tmp_root, "locust")
    sampler = GraphSampler(APP)
    load = run_step_load(locust, f"/{APP}/predict", spec, prefix, sampler)
    time.sleep(1)  # the controller's log handler flushes
    found, errors = decisions(APP, t_deploy)
    out = {
        "app": APP,
        "serve_config": serve_config(spec),
        **load,
        "samples": sampler.samples,
        "sampler_errors": sampler.errors[:20],
        "decisions": found,
        "policy_errors": errors,
    }
    serve.delete(APP)
    return out


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    from routing.state import STATE_DIR_ENV

    # Private router state, inherited by the cluster's processes: a snapshot from an earlier
    # run would carry its counts over.
    os.environ[STATE_DIR_ENV] = os.path.join(h.private_dir(), "state")
    locust = shutil.which("locust", path=os.path.dirname(sys.executable)) or "locust"
    with h.ray_cluster(num_cpus=2):
        run = run_graph(spec, locust)
        machine = h.machine_info()
    return {"run": run, "machine": machine, "measured_at": h.now()}
