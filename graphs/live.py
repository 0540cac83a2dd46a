"""Live per-node figures of a served graph, for ``GET /<graph>/live`` and the live page.

Each node reports what its replica measures (:class:`autoscale.stats.ReplicaStats`, through the
``record_autoscaling_stats`` call every node takes, fused or not): requests per second, p50 and
p95 latency, failed requests per second, requests in flight and service time. One replica of the
node's deployment answers; ``rps`` and ``errors_per_s`` are its figures times the deployment's
running replicas (Serve spreads requests over them), ``per_replica`` keeps its own. Replica
counts come from Serve's status (the controller), read at most once a second per ingress replica.

The bottleneck is the node whose replicas are busiest: requests per second per replica times
service time (1.0 = a replica never idle).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from autoscale.stats import ARRIVAL_RATE, ERROR_RATE, P50_MS, P95_MS, QUEUE_LEN, SERVICE_TIME_MS

__all__ = ["NODE_TIMEOUT_S", "ReplicaCounts", "live_view", "node_figures"]

log = logging.getLogger("servegraph")

#: How long ``/live`` waits for a node's figures before it reports the node as not answering.
NODE_TIMEOUT_S = 2.0


def node_figures(stats: Mapping[str, float], replicas: int) -> dict[str, Any]:
    """A node's figures from one replica's ``stats`` (``ReplicaStats.snapshot``) and its
    deployment's running ``replicas``.

    Returns:
        ``rps``, ``errors_per_s``, ``p50_ms``, ``p95_ms`` (None without recent requests),
        ``in_flight`` (this replica's), ``busy`` (share of a replica's time spent serving) and
        ``per_replica`` (the answering replica's rate and error rate).
    """
    scale = max(1, replicas)
    rate = float(stats.get(ARRIVAL_RATE, 0.0))
    errors = float(stats.get(ERROR_RATE, 0.0))
    service_ms = stats.get(SERVICE_TIME_MS)
    return {
        "replicas": replicas,
        "rps": rate * scale,
        "errors_per_s": errors * scale,
        "p50_ms": stats.get(P50_MS),
        "p95_ms": stats.get(P95_MS),
        "in_flight": float(stats.get(QUEUE_LEN, 0.0)),
        "service_ms": service_ms,
        "busy": rate * service_ms / 1000.0 if service_ms is not None else 0.0,
        "per_replica": {"rps": rate, "errors_per_s": errors},
    }


def bottleneck(nodes: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The node whose replicas are busiest (None when no node served anything recently)."""
    busy = {name: float(f.get("busy") or 0.0) for name, f in nodes.items()}
    name = max(busy, key=lambda n: busy[n], default=None)
    return name if name is not None and busy[name] > 0 else None


class ReplicaCounts:
    """Running replicas per deployment of this replica's application, from Serve's status,
    cached for ``ttl_s`` seconds (the page polls every second, from any number of browsers)."""

    def __init__(self, ttl_s: float = 1.0):
        self.ttl_s = ttl_s
        self._at = -1e9
        self._counts: dict[str, dict[str, Any]] = {}
        self._lock = asyncio.Lock()

    async def get(self) -> dict[str, dict[str, Any]]:
        """Deployment name -> ``{"status", "running", "replica_states"}``."""
        async with self._lock:
            if time.monotonic() - self._at >= self.ttl_s:
                try:
                    self._counts = await asyncio.to_thread(_read_counts)
                except Exception:  # the controller is busy or restarting: the last counts
                    log.warning("servegraph /live: Serve's status unavailable", exc_info=True)
                self._at = time.monotonic()
            return self._counts


def _read_counts() -> dict[str, dict[str, Any]]:
    from ray import serve

    app = serve.get_replica_context().app_name
    status = serve.status().applications.get(app)
    if status is None:
        return {}
    out = {}
    for name, d in status.deployments.items():
        states = {str(getattr(k, "value", k)): int(v) for k, v in d.replica_states.items()}
        out[name] = {
            "status": str(getattr(d.status, "value", d.status)),
            "running": states.get("RUNNING", 0),
            "replica_states": states,
        }
    return out


async def _stats_of(handle: Any) -> dict[str, float] | str:
    try:
        call = _await(handle.record_autoscaling_stats.remote())
        out = await asyncio.wait_for(call, NODE_TIMEOUT_S)
    except TimeoutError:
        return f"no answer within {NODE_TIMEOUT_S:g} s"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return dict(out)


async def _await(call: Any) -> Any:
    return await call


async def live_view(
    graph: str,
    placement: Mapping[str, str],
    handles: Mapping[str, Any],
    counts: ReplicaCounts,
    admission: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``GET /<graph>/live``: per node its deployment and figures (or ``error`` when it did not
    answer), per deployment Serve's status and replica states, and the bottleneck.

    Args:
        graph: the graph's name.
        placement: node name -> the deployment it runs in.
        handles: node name -> a handle (deployment handle or fused node) taking
            ``record_autoscaling_stats``.
        counts: where replica counts come from.
        admission: this ingress replica's admission figures, shown as the ingress's.
    """
    names = list(placement)
    stats, deployments = await asyncio.gather(
        asyncio.gather(*(_stats_of(handles[n]) for n in names)), counts.get()
    )
    nodes: dict[str, Any] = {}
    for name, got in zip(names, stats):
        host = placement[name]
        running = deployments.get(host, {}).get("running", 1)
        if isinstance(got, str):
            nodes[name] = {"deployment": host, "replicas": running, "error": got}
        else:
            nodes[name] = {"deployment": host, **node_figures(got, running)}
    return {
        "graph": graph,
        "at": time.time(),
        "nodes": nodes,
        "deployments": deployments,
        "bottleneck": bottleneck(nodes),
        **({"admission": dict(admission)} if admission is not None else {}),
    }
