"""Live autoscaling under a step load: servegraph's policy against Ray Serve's default.

One private local Ray cluster (``graphs.cluster.RECOMMENDED_ENV``, Serve on 127.0.0.1:8100) runs,
one after the other, two fresh deployments of the same one-node graph: a python-runtime model
node that sleeps ``--service-ms`` per request (no CPU, ``num_cpus: 0``, ``max_ongoing_requests:
2``) behind the ingress. Run ``ours`` scales the node with servegraph's policy (``autoscaling:``
in the graph, :data:`OURS`); run ``ray_default`` with Ray Serve's default policy
(``autoscaling_config:`` :data:`RAY_DEFAULT`: 30 s upscale delay, 600 s downscale delay).

Each run drives ``locust -f loadtests/locust_step.py --headless`` (low -> high -> low users,
bounded) at ``/<app>/predict`` while the driver samples the node's replicas every 0.5 s
(``serve.status()`` replica states, and the target from the controller's instance details,
what Serve's REST API serves). Writes ``reports/autoscale_live.md`` (``--quick``:
``autoscale_live_quick.md``) with PNG plots of latency, throughput and replicas over time, and
the raw series to the matching ``.json``.

    python loadtests/autoscale_live.py            # ~105 s of load per run, ~6 min in all
    python loadtests/autoscale_live.py --quick    # ~50 s per run
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import glob
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import _harness as h

#: servegraph's policy for the model node (``autoscaling:`` of the node).
OURS: dict[str, Any] = {
    "slo_p95_ms": 400,
    "target_queue_per_replica": 2,
    "min_replicas": 1,
    "max_replicas": 8,
    "upscale_cooldown_s": 2,
    "downscale_cooldown_s": 10,
    "max_step": 4,
}
#: Ray Serve's default policy, same bounds and load target (``autoscaling_config:``).
RAY_DEFAULT: dict[str, Any] = {"min_replicas": 1, "max_replicas": 8, "target_ongoing_requests": 2}
POLICIES = ("ours", "ray_default")
LABELS = {"ours": "servegraph policy", "ray_default": "Ray Serve default policy"}
COLORS = {"ours": "tab:blue", "ray_default": "tab:orange"}
NODE = "model"
BODY = {"inputs": {"x": [1.0]}}
SAMPLE_EVERY_S = 0.5
#: Pass marks (the issue's claims).
UP_WITHIN_S = 10.0
DOWN_WITHIN_S = 30.0


class SleepModel:
    """A model that takes ``service_ms`` per request and uses no CPU: replicas are cheap."""

    def __init__(self, service_ms: float = 100.0):
        self.service_s = service_ms / 1000.0

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        time.sleep(self.service_s)
        return {"x": payload["x"]}


if __name__ != "__main__":  # imported: replicas must still get the class by value
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def graph(policy: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The one-node graph of a run, scaled by ``policy``."""
    node: dict[str, Any] = {
        "name": NODE,
        "kind": "model",
        "runtime": "python",
        "model_class": SleepModel,  # an object: the framework pickles it (by value: __main__)
        "init_kwargs": {"service_ms": spec["service_ms"]},
        "num_cpus": 0,
        "max_ongoing_requests": spec["max_ongoing"],
    }
    if policy == "ours":
        node["autoscaling"] = {**OURS, "slo_p95_ms": spec["slo_ms"]}
    else:
        node["autoscaling_config"] = dict(RAY_DEFAULT)
    tensor = [{"name": "x", "datatype": "FP32", "shape": [-1]}]
    return {
        "name": name,
        "inputs": tensor,
        "outputs": tensor,
        "entry": NODE,
        "nodes": [node],
        "ingress": {"num_cpus": 0},
    }


# --- worker: one cluster, both runs --------------------------------------------------------


class ReplicaSampler(threading.Thread):
    """Samples the node's replica states and autoscaling target every ``SAMPLE_EVERY_S``."""

    def __init__(self, app: str):
        super().__init__(daemon=True)
        self.app = app
        self.samples: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def _details(self) -> dict[str, Any]:
        import ray
        from ray.serve.context import _get_global_client

        controller = _get_global_client()._controller
        inst = ray.get(controller.get_serve_instance_details.remote(), timeout=5)
        dep: dict[str, Any] = inst["applications"][self.app]["deployments"][NODE]
        return dep

    def run(self) -> None:
        from ray import serve

        while not self._halt.is_set():
            t0 = time.time()
            row: dict[str, Any] = {"t": t0}
            try:
                st = serve.status().applications[self.app].deployments[NODE]
                states = {str(getattr(k, "value", k)): int(v) for k, v in st.replica_states.items()}
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
            row["sample_ms"] = round(1000 * (time.time() - t0), 1)
            self.samples.append(row)
            self._halt.wait(max(0.0, SAMPLE_EVERY_S - (time.time() - t0)))


_LOG_TS = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),(\d{3})")


def controller_log_lines(app: str, since: float) -> dict[str, list[Any]]:
    """Scaling decisions for ``app``'s node and policy errors, from Serve's controller log."""
    tmp_root = os.environ.get("LOADTESTS_TMP_ROOT", "")
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
    tmp_root = os.environ["LOADTESTS_TMP_ROOT"]
    t_deploy = time.time()
    serve.run(
        graphs.compile_graph(graphs.parse_graph(graph(policy, app, spec))),
        name=app,
        route_prefix=f"/{app}",
    )
    h.wait_ready(f"{h.BASE_URL}/{app}/predict", BODY, timeout_s=120)
    print(f"[autoscale_live] {policy}: ready in {time.time() - t_deploy:.0f}s", file=sys.stderr)

    prefix = os.path.join(tmp_root, f"locust_{policy}")
    env = {
        **os.environ,
        "STEP_PATH": f"/{app}/predict",
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
        "--csv-full-history",
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    total = spec["low_s"] + spec["high_s"] + spec["tail_s"]
    sampler = ReplicaSampler(app)
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
        "command": " ".join(cmd[1:]),
        "exit_code": proc.returncode,
        "output_tail": (proc.stdout + proc.stderr)[-3000:],
        "cpu": cpu.result,
        "requests": requests,
        "phases": phases,
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


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    locust = shutil.which("locust", path=os.path.dirname(sys.executable)) or "locust"
    runs = []
    with h.ray_cluster(num_cpus=2):
        for i, policy in enumerate(spec["policies"]):
            if i:
                time.sleep(5)  # let the deleted app's replicas go
            runs.append(run_policy(policy, spec, locust))
        machine = h.machine_info()
    return {"runs": runs, "machine": machine, "measured_at": h.now()}


# --- analysis ---------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float | None:
    """The ``q``-quantile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    s = sorted(values)
    return float(s[max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))])


def _at(samples: Sequence[dict[str, Any]], t: float, key: str) -> int | None:
    """Sample-and-hold value of ``key`` at ``t`` (the last sample at or before ``t``)."""
    last = None
    for s in samples:
        if s["t"] > t:
            break
        if key in s:
            last = s[key]
    return last


def _first_change(
    samples: Sequence[dict[str, Any]], t_from: float, t_to: float, key: str, up: bool
) -> float | None:
    """Seconds after ``t_from`` until ``key`` first rises (``up``) or falls below its value
    at ``t_from``; None if it does not before ``t_to``."""
    base = _at(samples, t_from, key)
    if base is None:
        return None
    for s in samples:
        if s["t"] <= t_from or s["t"] > t_to or key not in s:
            continue
        if (s[key] > base) if up else (s[key] < base):
            return float(s["t"] - t_from)
    return None


def _first_reach(
    samples: Sequence[dict[str, Any]], t_from: float, t_to: float, key: str, level: int
) -> float | None:
    """Seconds after ``t_from`` until ``key`` first reaches ``level``; None if not by ``t_to``."""
    for s in samples:
        if t_from < s["t"] <= t_to and s.get(key, -1) >= level:
            return float(s["t"] - t_from)
    return None


def analyse(run: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Per-second series and the table's figures of one run (times relative to the load's start)."""
    phases = run["phases"]
    t0 = float(phases.get("t0") or (run["requests"][0][0] if run["requests"] else 0.0))
    low_s, high_s, tail_s = spec["low_s"], spec["high_s"], spec["tail_s"]
    total = low_s + high_s + tail_s
    # Phase starts as the shape actually ticked them (the shape ticks once a second).
    ps = phases.get("phase_start", {})
    up = float(ps["high"] - t0) if "high" in ps else float(low_s)
    down = float(ps["tail"] - t0) if "tail" in ps else float(low_s + high_s)
    samples = [{**s, "t": s["t"] - t0} for s in run["samples"]]
    reqs = [(e - t0, lat, ok) for e, lat, ok in run["requests"]]

    seconds = math.ceil(total)
    windows = []
    for w in range(seconds):
        lats = [lat for t, lat, ok in reqs if w <= t < w + 1 and ok]
        errs = sum(1 for t, _, ok in reqs if w <= t < w + 1 and not ok)
        windows.append(
            {
                "t": w,
                "n": len(lats),
                "errors": errs,
                "rps": len(lats),
                "p50_ms": pct(lats, 0.50),
                "p95_ms": pct(lats, 0.95),
                "running": _at(samples, w + 1, "running"),
                "target": _at(samples, w + 1, "target"),
            }
        )
    slo = spec["slo_ms"]

    def attainment(lo: float, hi: float) -> float | None:
        ws = [w for w in windows if lo <= w["t"] and w["t"] + 1 <= hi and w["p95_ms"] is not None]
        if not ws:
            return None
        return 100.0 * sum(1 for w in ws if w["p95_ms"] <= slo) / len(ws)

    # Replica-seconds: running replicas, sample-and-hold over [0, total].
    rs = 0.0
    inside = [s for s in samples if "running" in s]
    for a, b in itertools.pairwise(inside):
        lo, hi = max(a["t"], 0.0), min(b["t"], total)
        if hi > lo:
            rs += a["running"] * (hi - lo)
    at_step = _at(samples, up, "running") or 0
    max_replicas = int(
        (run["graph_node"].get("autoscaling") or run["graph_node"].get("autoscaling_config"))[
            "max_replicas"
        ]
    )
    doubled = min(max(2 * at_step, at_step + 1), max_replicas)
    peak_high = max((s.get("running", 0) for s in samples if up <= s["t"] <= down), default=0)
    high_lats = [lat for t, lat, ok in reqs if up <= t < down and ok]
    high_n = len(high_lats)
    in_run = [s for s in samples if 0 <= s["t"] <= total]
    return {
        "t_step_up_s": round(up, 2),
        "t_step_down_s": round(down, 2),
        "scale_up_decision_s": _first_change(samples, up, total, "target", up=True),
        "scale_up_running_s": _first_change(samples, up, total, "running", up=True),
        "doubled_running_s": _first_reach(samples, up, total, "running", doubled),
        "doubled_to": doubled,
        "peak_high_running_s": _first_reach(samples, up, down, "running", peak_high),
        "peak_high_running": peak_high,
        "peak_running": max((s.get("running", 0) for s in in_run), default=None),
        "peak_target": max((s.get("target", 0) for s in in_run), default=None),
        "running_at_step_up": _at(samples, up, "running"),
        "running_at_step_down": _at(samples, down, "running"),
        "running_at_end": _at(samples, total, "running"),
        "replica_seconds": round(rs, 1),
        "p50_high_ms": pct(high_lats, 0.50),
        "p95_high_ms": pct(high_lats, 0.95),
        "rps_high": round(high_n / max(down - up, 1e-9), 1),
        "slo_attainment_pct": attainment(0, total),
        "slo_attainment_high_pct": attainment(up, down),
        "scale_down_decision_s": _first_change(samples, down, total, "target", up=False),
        "scale_down_running_s": _first_change(samples, down, total, "running", up=False),
        "requests": len(reqs),
        "errors": sum(1 for _, _, ok in reqs if not ok),
        "windows": windows,
        "replica_series": [
            [round(s["t"], 2), s.get("running"), s.get("target")]
            for s in samples
            if -5 <= s["t"] <= total + 5
        ],
    }


def plot(results: dict[str, dict[str, Any]], spec: dict[str, Any], path: str) -> None:
    """Latency, throughput and replicas over time, both policies overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(11, 10), sharex=True)
    total = spec["low_s"] + spec["high_s"] + spec["tail_s"]
    for policy, a in results.items():
        c = COLORS.get(policy, None)
        ws = a["windows"]
        ts = [w["t"] + 0.5 for w in ws]
        axes[0].plot(ts, [w["p95_ms"] for w in ws], color=c, label=f"{LABELS[policy]} p95")
        axes[0].plot(ts, [w["p50_ms"] for w in ws], color=c, ls=":", label=f"{LABELS[policy]} p50")
        axes[1].plot(ts, [w["rps"] for w in ws], color=c, label=LABELS[policy])
        rt = [r[0] for r in a["replica_series"]]
        axes[2].step(
            rt,
            [r[1] for r in a["replica_series"]],
            where="post",
            color=c,
            label=f"{LABELS[policy]} running",
        )
        axes[2].step(
            rt,
            [r[2] for r in a["replica_series"]],
            where="post",
            color=c,
            ls="--",
            alpha=0.6,
            label=f"{LABELS[policy]} target",
        )
    any_run = next(iter(results.values()))
    for ax in axes:
        ax.axvspan(any_run["t_step_up_s"], any_run["t_step_down_s"], color="grey", alpha=0.12)
        ax.grid(alpha=0.3)
    axes[0].axhline(spec["slo_ms"], color="red", lw=1, ls="--", label=f"SLO {spec['slo_ms']} ms")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("latency, 1-s windows (ms)")
    axes[0].legend(fontsize=8, ncol=2, loc="upper right")
    axes[1].set_ylabel("throughput (req/s)")
    axes[1].legend(fontsize=8)
    axes[2].set_ylabel("replicas of the model node")
    axes[2].set_xlabel(
        f"seconds since the load started (shaded: {spec['high_users']} users; "
        f"otherwise {spec['low_users']})"
    )
    axes[2].legend(fontsize=8, ncol=2, loc="upper left")
    axes[2].set_xlim(0, total)
    fig.suptitle(
        f"Step load {spec['low_users']} -> {spec['high_users']} -> {spec['low_users']} users, "
        f"{spec['service_ms']:.0f} ms per request, max_ongoing_requests {spec['max_ongoing']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _s(v: Any, unit: str = "", nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}{unit}"
    return f"{v}{unit}"


def report(raw: dict[str, Any], spec: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    results = {run["policy"]: analyse(run, spec) for run in raw["runs"]}
    png = f"{name}.png"
    plot(results, spec, os.path.join(h.REPORTS, png))
    for policy in results:
        plot({policy: results[policy]}, spec, os.path.join(h.REPORTS, f"{name}_{policy}.png"))
    headers = ["", *[LABELS[p] for p in results]]
    runs = list(results.values())

    def row(label: str, fmt: Any) -> list[str]:
        return [label, *[fmt(a) for a in runs]]

    def after(key: str, within: float) -> Any:
        return lambda a: _s(a[key], " s") if a[key] is not None else f"none in {within:.0f} s"

    total = spec["low_s"] + spec["high_s"] + spec["tail_s"]
    rows = [
        row("replicas at the step (running)", lambda a: _s(a["running_at_step_up"])),
        row(
            "first scale-up decision (target raised) after the step",
            after("scale_up_decision_s", total - spec["low_s"]),
        ),
        row(
            "first new replica RUNNING after the step",
            after("scale_up_running_s", total - spec["low_s"]),
        ),
        row(
            "running replicas doubled (2x the count at the step) after",
            lambda a: (
                f"{_s(a['doubled_running_s'], ' s')} (to {a['doubled_to']})"
                if a["doubled_running_s"] is not None
                else f"not in the high phase (to {a['doubled_to']})"
            ),
        ),
        row(
            "high-phase peak reached (running) after",
            lambda a: (
                f"{_s(a['peak_high_running_s'], ' s')} ({a['peak_high_running']} replicas)"
                if a["peak_high_running"] > (a["running_at_step_up"] or 0)
                else "no rise in the high phase"
            ),
        ),
        row(
            "peak replicas, whole run (running / target)",
            lambda a: f"{a['peak_running']} / {a['peak_target']}",
        ),
        row("replica-seconds (running, whole run)", lambda a: _s(a["replica_seconds"])),
        row(
            "p50 / p95 latency, high phase",
            lambda a: f"{_s(a['p50_high_ms'], ' ms', 0)} / {_s(a['p95_high_ms'], ' ms', 0)}",
        ),
        row("throughput, high phase", lambda a: _s(a["rps_high"], " req/s")),
        row(
            f"1-s windows with p95 <= {spec['slo_ms']:.0f} ms, whole run",
            lambda a: _s(a["slo_attainment_pct"], " %"),
        ),
        row(
            f"1-s windows with p95 <= {spec['slo_ms']:.0f} ms, high phase",
            lambda a: _s(a["slo_attainment_high_pct"], " %"),
        ),
        row(
            "first scale-down decision after the step-down",
            after("scale_down_decision_s", spec["tail_s"]),
        ),
        row(
            "replicas fall (running) after the step-down",
            after("scale_down_running_s", spec["tail_s"]),
        ),
        row(
            "replicas at the step-down / at the end",
            lambda a: f"{a['running_at_step_down']} / {a['running_at_end']}",
        ),
        row("requests (failed)", lambda a: f"{a['requests']} ({a['errors']})"),
    ]
    checks = []
    ours, ray_ = results.get("ours"), results.get("ray_default")
    if ours is not None:
        # A scale-up is credited to the step once the running replicas have doubled: a first
        # +1 right after the step can come from a decision the low load already made.
        up = ours["doubled_running_s"]
        checks.append(
            (
                f"ours scales up within {UP_WITHIN_S:.0f} s of the step (running replicas doubled)",
                up is not None and up <= UP_WITHIN_S,
                f"{_s(up, ' s')} to {ours['doubled_to']} replicas (first decision after "
                f"{_s(ours['scale_up_decision_s'], ' s')}, first new replica running after "
                f"{_s(ours['scale_up_running_s'], ' s')})",
            )
        )
        dn = ours["scale_down_running_s"]
        checks.append(
            (
                f"ours scales down within {DOWN_WITHIN_S:.0f} s after the load drops",
                dn is not None and dn <= DOWN_WITHIN_S,
                f"{_s(dn, ' s')} ({ours['running_at_step_down']} -> "
                f"{ours['running_at_end']} replicas by the end)"
                if dn is not None
                else f"no fall within the {spec['tail_s']:.0f} s tail",
            )
        )
    if ours is not None and ray_ is not None:
        a, b = ours["slo_attainment_pct"], ray_["slo_attainment_pct"]
        checks.append(
            (
                "ours has a better SLO attainment than Ray's default (whole run)",
                a is not None and b is not None and a > b,
                f"{_s(a, ' %')} vs {_s(b, ' %')}",
            )
        )
    verdicts = [
        f"- **{'PASS' if ok else 'FAIL'}**: {what}: {detail}" for what, ok, detail in checks
    ]

    notes = []
    if ours is not None and ray_ is not None:
        if (ours["running_at_step_up"] or 0) > (ray_["running_at_step_up"] or 0):
            notes.append(
                f"- At the low load ours runs {ours['running_at_step_up']} replicas at the step "
                f"and {ours['running_at_end']} at the end where Ray's default runs "
                f"{ray_['running_at_step_up']}: ours sizes a node for its arrival rate, "
                "`ceil(rate * service_time / target_utilisation)` (scale-down floor: the same "
                "with `target_utilisation * (1 + downscale_headroom) / 2`), and a replica's "
                "service time is its latency divided by the requests it holds at once "
                "(`autoscale/stats.py`). A replica holding one sleeping request at a time "
                f"counts as fully busy although `max_ongoing_requests: {spec['max_ongoing']}` "
                "lets it take more, and spreading the load over more replicas lowers what each "
                "holds, so the estimate does not come back down."
            )
        up_ray = ray_["scale_up_decision_s"]
        notes.append(
            "- Ray's default raises its target "
            + (
                f"{up_ray:.0f} s after the step"
                + (
                    " (after the load dropped)"
                    if up_ray > ray_["t_step_down_s"] - ray_["t_step_up_s"]
                    else ""
                )
                if up_ray is not None
                else "not at all during the run"
            )
            + ": replicas push metrics every 10 s, averaged over 30 s, and a scale-up must be "
            "wanted for 30 s (`upscale_delay_s`); a scale-down for 600 s."
        )
        capacity = 1000.0 * spec["max_ongoing"] / spec["service_ms"]
        notes.append(
            f"- One replica could serve {capacity:.0f} req/s; with "
            f"{spec['high_users']} users queued at the ingress the run with Ray's default "
            f"delivers {ray_['rps_high']:.0f} req/s in the high phase: while the replica is "
            "full, Serve's router retries with a back-off (README, bench_batching), so a "
            "saturated node serves less than its capacity until replicas are added."
        )

    decisions = []
    for run in raw["runs"]:
        t0 = float(run["phases"].get("t0") or 0.0)
        for ts, line in run["controller_log"]["decisions"]:
            msg = re.sub(r".*?((Up|Down)scaling .*)", r"\1", line)
            when = f"{ts - t0:+.1f} s" if ts else "?"
            decisions.append(f"| {run['policy']} | {when} | {msg} |")
    errors = [e for run in raw["runs"] for e in run["controller_log"]["errors"]]
    cpu = {run["policy"]: run["cpu"] for run in raw["runs"]}
    exit_codes = {run["policy"]: run["exit_code"] for run in raw["runs"]}

    lines = [
        f"# Live autoscaling under a step load{' (quick)' if spec['quick'] else ''}",
        "",
        f"Measured {raw.get('measured_at') or h.now()} with `python loadtests/autoscale_live.py"
        f"{' --quick' if spec['quick'] else ''}` on a private local Ray cluster (Ray "
        f"{raw['machine'].get('ray')}, `graphs.cluster.RECOMMENDED_ENV`, Serve on 127.0.0.1:8100).",
        "",
        f"Graph: ingress -> one python-runtime model node `{NODE}` that sleeps "
        f"{spec['service_ms']:.0f} ms per request (`num_cpus: 0`, `max_ongoing_requests: "
        f"{spec['max_ongoing']}`: one replica serves at most "
        f"{1000 * spec['max_ongoing'] / spec['service_ms']:.0f} req/s). Load: `locust -f "
        f"loadtests/locust_step.py --headless` (closed loop, no think time) with "
        f"{spec['low_users']} users for {spec['low_s']:.0f} s, {spec['high_users']} users for "
        f"{spec['high_s']:.0f} s, {spec['low_users']} users for {spec['tail_s']:.0f} s. Both runs "
        "in one cluster, one after the other, each on a fresh application.",
        "",
        f"- **{LABELS['ours']}** (`autoscaling:` of the node): "
        f"`{json.dumps({**OURS, 'slo_p95_ms': spec['slo_ms']})}`",
        f"- **{LABELS['ray_default']}** (`autoscaling_config:` of the node): "
        f"`{json.dumps(RAY_DEFAULT)}`; Ray's defaults otherwise (upscale delay 30 s, downscale "
        "delay 600 s, metrics every 10 s averaged over 30 s)",
        "",
        "Times are seconds after the step (up: the users jump; down: they drop back); replicas "
        f"sampled every {SAMPLE_EVERY_S} s from the driver (`serve.status()` replica states; "
        "target = `target_num_replicas` of the controller's instance details, as the REST API "
        "reports it). Latency is locust's end-to-end time per request; 1-s windows by "
        "completion time.",
        "",
        h.md_table(headers, rows),
        "",
        *verdicts,
        "",
        *(["## Reading the figures", "", *notes, ""] if notes else []),
        f"![latency, throughput and replicas over time]({png})",
        "",
        "Per policy: " + ", ".join(f"[{LABELS[p]}]({name}_{p}.png)" for p in results),
        "",
        "## Scaling decisions (Serve controller log)",
        "",
        "| run | time after the load started | decision |",
        "|---|---|---|",
        *(decisions or ["| - | - | none logged |"]),
        "",
    ]
    if errors:
        lines += ["## Policy errors in the controller log", "", "```", *errors[:5], "```", ""]
    lines += [
        "## Conditions",
        "",
        f"Locust exit codes {exit_codes} (0: no failed request). CPU while each run's load ran "
        f"(cores; `foreign` is everything outside this benchmark's process tree, e.g. another "
        f"cluster on the machine): {json.dumps(cpu)}. Machine: {json.dumps(raw['machine'])}.",
    ]
    data = {
        "spec": spec,
        "machine": raw["machine"],
        "checks": [{"check": w, "pass": ok, "detail": d} for w, ok, d in checks],
        "results": results,
        "runs": [
            {k: v for k, v in run.items() if k not in ("requests", "samples")}
            for run in raw["runs"]
        ],
    }
    return "\n".join(lines), data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s low, 20 s high, 20 s tail")
    parser.add_argument("--low-users", type=int, default=int(os.environ.get("STEP_LOW_USERS", 2)))
    parser.add_argument(
        "--high-users", type=int, default=int(os.environ.get("STEP_HIGH_USERS", 24))
    )
    parser.add_argument("--low-s", type=float, help="seconds at the low load first [20; quick 10]")
    parser.add_argument("--high-s", type=float, help="seconds at the high load [45; quick 20]")
    parser.add_argument("--tail-s", type=float, help="seconds back at the low load [40; quick 20]")
    parser.add_argument("--service-ms", type=float, default=100.0)
    parser.add_argument("--max-ongoing", type=int, default=2)
    parser.add_argument("--slo-ms", type=float, default=400.0)
    parser.add_argument("--policies", default=",".join(POLICIES), help="order of the runs")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument(
        "--from-raw",
        help="re-render the report from a kept worker result.json (with the same duration flags)",
    )
    h.add_worker_args(parser)
    args = parser.parse_args(argv)
    if h.run_as_worker(args, worker):
        return 0

    from graphs.cluster import RECOMMENDED_ENV

    defaults = (10.0, 20.0, 20.0) if args.quick else (20.0, 45.0, 40.0)
    env_s = [os.environ.get(k) for k in ("STEP_LOW_S", "STEP_HIGH_S", "STEP_TAIL_S")]
    low_s, high_s, tail_s = (
        v if v is not None else (float(e) if e else d)
        for v, e, d in zip((args.low_s, args.high_s, args.tail_s), env_s, defaults, strict=True)
    )
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = set(policies) - set(POLICIES)
    if unknown:
        parser.error(f"unknown policies {sorted(unknown)}; choose from {POLICIES}")
    spec = {
        "quick": args.quick,
        "low_users": args.low_users,
        "high_users": args.high_users,
        "low_s": low_s,
        "high_s": high_s,
        "tail_s": tail_s,
        "service_ms": args.service_ms,
        "max_ongoing": args.max_ongoing,
        "slo_ms": args.slo_ms,
        "policies": policies,
    }
    per_run = low_s + high_s + tail_s
    if args.from_raw:
        with open(args.from_raw, encoding="utf-8") as f:
            raw = json.load(f)
        raw.setdefault(
            "measured_at",
            time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(os.path.getmtime(args.from_raw))),
        )
    else:
        raw = h.run_worker(
            os.path.abspath(__file__),
            spec,
            dict(RECOMMENDED_ENV),
            tag="autoscale_live",
            timeout_s=240 + len(policies) * (per_run + 150),
            keep_logs=args.keep_logs,
        )
    name = "autoscale_live_quick" if args.quick else "autoscale_live"
    os.makedirs(h.REPORTS, exist_ok=True)
    markdown, data = report(raw, spec, name)
    path = h.write_report(name, markdown, data)
    print(markdown)
    for run in raw["runs"]:
        if run["exit_code"] != 0:
            print(
                f"[{run['policy']}] locust exit {run['exit_code']}:\n{run['output_tail']}",
                file=sys.stderr,
            )
    print(f"\nreport: {path}", file=sys.stderr)
    return 0 if all(c["pass"] for c in data["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
