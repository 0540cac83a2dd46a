"""The worker: one live cluster, both runs one after the other, replicas sampled meanwhile."""

from __future__ import annotations

import abc
import contextlib
import csv
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

import _harness as h

from . import scenario
from .scenario import BODY, NODE, SAMPLE_EVERY_S, graph


class Sampler(threading.Thread, metaclass=abc.ABCMeta):
    """Every ``SAMPLE_EVERY_S`` until :meth:`stop`, appends ``{"t", **sample(tick),
    "sample_ms"}`` to ``samples``; what failed goes to ``errors`` (a missed figure is a gap).
    Subclasses say what one sample holds."""

    def __init__(self, app: str):
        super().__init__(daemon=True)
        self.app = app
        self.samples: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    @abc.abstractmethod
    def sample(self, tick: int) -> dict[str, Any]:
        """One sample's figures (``tick``: how many were taken before it)."""

    def run(self) -> None:
        tick = 0
        while not self._halt.is_set():
            t0 = time.time()
            row = {"t": t0, **self.sample(tick)}
            tick += 1
            row["sample_ms"] = round(1000 * (time.time() - t0), 1)
            self.samples.append(row)
            self._halt.wait(max(0.0, SAMPLE_EVERY_S - (time.time() - t0)))


class ReplicaSampler(Sampler):
    """The node's replica states and autoscaling target."""

    def _details(self) -> dict[str, Any]:
        import ray
        from ray.serve.context import _get_global_client

        controller = _get_global_client()._controller
        inst = ray.get(controller.get_serve_instance_details.remote(), timeout=5)
        dep: dict[str, Any] = inst["applications"][self.app]["deployments"][NODE]
        return dep

    def sample(self, tick: int) -> dict[str, Any]:
        from ray import serve

        row: dict[str, Any] = {}
        try:
            st = serve.status().applications[self.app].deployments[NODE]
            states = h.replica_counts(st)
            row["running"] = states.get("RUNNING", 0)
            row["starting"] = states.get("STARTING", 0)
            row["stopping"] = states.get("STOPPING", 0)
            row["status"] = str(getattr(st.status, "value", st.status))
        except Exception as exc:  # keep sampling; a missed sample is a gap
            self.errors.append(f"{time.time():.1f} status: {exc!r}")
        try:
            dep = self._details()
            row["target"] = int(dep["target_num_replicas"])
        except Exception as exc:
            self.errors.append(f"{time.time():.1f} details: {exc!r}")
        return row


_LOG_TS = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),(\d{3})")


def controller_log_lines(app: str, since: float) -> dict[str, list[Any]]:
    """Scaling decisions for ``app``'s node and policy errors, from Serve's controller log."""
    tmp_root = h.private_dir()
    pattern = os.path.join(tmp_root, "ray", "session_latest", "logs", "serve", "controller_*.log")
    decisions: list[list[Any]] = []
    errors: list[str] = []
    for path in sorted(glob.glob(pattern)):
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
        for i, line in enumerate(lines):
            m = _LOG_TS.search(line)
            ts = (
                time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1e3
                if m
                else None
            )
            if ts is not None and ts < since - 1:
                continue
            if ("Upscaling" in line or "Downscaling" in line) and f"app='{app}'" in line:
                decisions.append([ts, line.strip()[-220:]])
            elif f"policy: {app}/" in line:  # ours, with its reason
                decisions.append([ts, line.strip()[line.find("servegraph ") :][:220]])
            low = line.lower()
            if ("traceback" in low or "error" in low or "exception" in low) and (
                "autoscal" in low or "policy" in low
            ):
                errors.append("".join(lines[i : i + 12]).strip()[:3000])
    return {"decisions": decisions, "errors": errors[:20]}


def run_policy(policy: str, spec: dict[str, Any], locust: str) -> dict[str, Any]:
    """Deploy the graph scaled by ``policy``, drive the step load, sample replicas."""
    from ray import serve

    import graphs

    app = f"as_{policy}"
    tmp_root = h.private_dir()
    t_deploy = time.time()
    serve.run(
        graphs.compile_graph(graphs.parse_graph(graph(policy, app, spec))),
        name=app,
        route_prefix=f"/{app}",
    )
    h.wait_ready(f"{h.BASE_URL}/{app}/predict", BODY, timeout_s=120)
    print(f"[autoscale_live] {policy}: ready in {time.time() - t_deploy:.0f}s", file=sys.stderr)

    prefix = os.path.join(tmp_root, f"locust_{policy}")
    sampler = ReplicaSampler(app)
    load = run_step_load(locust, f"/{app}/predict", spec, prefix, sampler, "--csv-full-history")
    history: list[dict[str, str]] = []
    with contextlib.suppress(FileNotFoundError), open(f"{prefix}_stats_history.csv") as f:
        history = [r for r in csv.DictReader(f) if r.get("Name") == "Aggregated"]
    log = controller_log_lines(app, t_deploy)
    final = serve.status().applications[app].deployments[NODE]
    out = {
        "policy": policy,
        "app": app,
        "graph_node": {
            k: v for k, v in graph(policy, app, spec)["nodes"][0].items() if k != "model_class"
        },
        **load,
        "locust_history": [
            {k: r.get(k) for k in ("Timestamp", "User Count", "Requests/s", "50%", "95%")}
            for r in history
        ],
        "samples": sampler.samples,
        "sampler_errors": sampler.errors[:20],
        "controller_log": log,
        "final_status_message": final.message,
    }
    serve.delete(app)
    return out


def run_step_load(
    locust: str, path: str, spec: dict[str, Any], prefix: str, sampler: Any, *extra: str
) -> dict[str, Any]:
    """Drive ``locust_step.py`` at ``path`` (the spec's step) while ``sampler`` (a thread with
    ``stop()``) samples; the command, its exit code and output, CPU, the per-request log
    ``[end_s, latency_ms, ok]`` and the phases' times."""
    env = {
        **os.environ,
        "STEP_PATH": path,
        "STEP_LOW_USERS": str(spec["low_users"]),
        "STEP_HIGH_USERS": str(spec["high_users"]),
        "STEP_LOW_S": str(spec["low_s"]),
        "STEP_HIGH_S": str(spec["high_s"]),
        "STEP_TAIL_S": str(spec["tail_s"]),
        "STEP_REQUEST_LOG": f"{prefix}_requests.csv",
        "STEP_PHASES_OUT": f"{prefix}_phases.json",
    }
    cmd = [
        locust,
        "-f",
        os.path.join(h.HERE, "locust_step.py"),
        "--headless",
        "--host",
        h.BASE_URL,
        "--csv",
        prefix,
        "--only-summary",
        "--loglevel",
        "WARNING",
        *extra,
    ]
    total = spec["low_s"] + spec["high_s"] + spec["tail_s"]
    sampler.start()
    try:
        with h.CpuWatch() as cpu:
            proc = subprocess.run(
                cmd,
                cwd=h.REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=total + 90,
                check=False,
            )
    finally:
        sampler.stop()
    requests: list[list[float]] = []
    with contextlib.suppress(FileNotFoundError), open(f"{prefix}_requests.csv") as f:
        requests = [
            [float(r["end_s"]), float(r["latency_ms"]), int(r["ok"])] for r in csv.DictReader(f)
        ]
    phases: dict[str, Any] = {}
    with contextlib.suppress(FileNotFoundError), open(f"{prefix}_phases.json") as f:
        phases = json.load(f)
    return {
        "command": " ".join(cmd[1:]),
        "exit_code": proc.returncode,
        "output_tail": (proc.stdout + proc.stderr)[-3000:],
        "cpu": cpu.result,
        "requests": requests,
        "phases": phases,
    }


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import ray.cloudpickle

    # Replicas get SleepModel by value, as when it was defined in the script's __main__: they
    # need not import this package.
    ray.cloudpickle.register_pickle_by_value(scenario)
    locust = shutil.which("locust", path=os.path.dirname(sys.executable)) or "locust"
    runs = []
    with h.ray_cluster(num_cpus=2):
        for i, policy in enumerate(spec["policies"]):
            if i:
                time.sleep(5)  # let the deleted app's replicas go
            runs.append(run_policy(policy, spec, locust))
        machine = h.machine_info()
    return {"runs": runs, "machine": machine, "measured_at": h.now()}
