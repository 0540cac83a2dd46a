"""Ray Serve adapters: the policy functions Serve calls, and the ``autoscaling_config`` they need.

- :func:`node_policy` is a deployment-level ``policy_function``: it turns one node's
  ``AutoscalingContext`` into :class:`~autoscale.metrics.NodeMetrics` and asks :func:`decide`.
- :func:`graph_policy` is an application-level policy (``applications[].autoscaling_policy`` in a
  Serve config): it sees every node's context at once and asks :func:`decide_graph`.

Each node's settings and its edges to the nodes it calls travel in its own
``autoscaling_config.policy.policy_kwargs``, so the application-level policy rebuilds the graph
from the contexts alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from autoscale.graph_decision import decide_graph
from autoscale.metrics import NodeMetrics
from autoscale.policy import REASON_KEY, decide
from autoscale.settings import ScalingSettings
from autoscale.stats import (
    ARRIVAL_RATE,
    ENGINE_WAITING,
    KV_CACHE_USAGE,
    P95_MS,
    SERVICE_TIME_MS,
    TTFT_P95_MS,
)
from autoscale.topology import GraphTopology

#: Every change of a node's target is logged here (Serve's controller log), naming the policy.
log = logging.getLogger("ray.serve")

NODE_POLICY = "autoscale.serve_policy:node_policy"
GRAPH_POLICY = "autoscale.serve_policy:graph_policy"
#: How often replicas push metrics and over what window the controller averages them: the
#: default 10 s / 30 s would make any policy react half a minute late.
METRICS_INTERVAL_S = 0.5
LOOK_BACK_PERIOD_S = 2.0


def autoscaling_config(settings: ScalingSettings, children: Mapping[str, float]) -> dict[str, Any]:
    """The ``autoscaling_config`` of a node scaled by our policy.

    Ray's own delays and smoothing are neutralised (our policy has its cooldowns), metrics are
    pushed often, and the node's settings and edges ride along in ``policy_kwargs``.
    """
    return {
        "min_replicas": settings.min_replicas,
        "max_replicas": settings.max_replicas,
        "initial_replicas": max(settings.min_replicas, 1),
        "upscale_delay_s": 0.0,
        "downscale_delay_s": 0.0,
        "upscaling_factor": 1.0,
        "downscaling_factor": 1.0,
        "metrics_interval_s": METRICS_INTERVAL_S,
        "look_back_period_s": LOOK_BACK_PERIOD_S,
        "policy": {
            "policy_function": NODE_POLICY,
            "policy_kwargs": {"settings": settings.model_dump(), "children": dict(children)},
        },
    }


def _kwargs(ctx: Any) -> dict[str, Any]:
    policy = getattr(ctx.config, "policy", None)
    return dict(getattr(policy, "policy_kwargs", None) or {})


def _settings(ctx: Any) -> ScalingSettings:
    return ScalingSettings(**_kwargs(ctx).get("settings", {}))


def metrics_from_context(ctx: Any) -> NodeMetrics:
    """One node's metrics from Serve's ``AutoscalingContext``.

    p95 is the worst replica's; arrival rates add up; service time is the rate-weighted mean.
    LLM engines: waiting requests add up; KV-cache usage and time to first token are the worst
    replica's.
    """
    per_metric = ctx.aggregated_metrics or {}
    p95 = list((per_metric.get(P95_MS) or {}).values())
    rates = per_metric.get(ARRIVAL_RATE) or {}
    service = per_metric.get(SERVICE_TIME_MS) or {}
    total_rate = sum(rates.values()) if rates else None
    service_time = None
    if service:
        weights = {r: rates.get(r, 0.0) for r in service}
        total = sum(weights.values())
        service_time = (
            sum(service[r] * weights[r] for r in service) / total
            if total > 0
            else sum(service.values()) / len(service)
        )

    def reduce(name: str, how: Any) -> float | None:
        values = list((per_metric.get(name) or {}).values())
        return float(how(values)) if values else None

    return NodeMetrics(
        current_replicas=int(ctx.target_num_replicas),
        ongoing_requests=max(0.0, float(ctx.total_num_requests or 0.0)),
        queued_requests=max(0.0, float(ctx.total_queued_requests or 0.0)),
        p95_ms=max(p95) if p95 else None,
        arrival_rate=total_rate,
        service_time_ms=service_time,
        engine_waiting=reduce(ENGINE_WAITING, sum),
        kv_cache_usage=reduce(KV_CACHE_USAGE, max),
        ttft_p95_ms=reduce(TTFT_P95_MS, max),
        running_replicas=_running(ctx),
    )


def _running(ctx: Any) -> int | None:
    running = getattr(ctx, "current_num_replicas", None)
    return int(running) if running is not None else None


def _now(ctx: Any) -> float:
    return float(ctx.current_time) if getattr(ctx, "current_time", None) else time.time()


def _where(ctx: Any, node: str) -> str:
    """``<app>/<node>`` for the log (the app is unknown to older contexts)."""
    app = getattr(ctx, "app_name", None)
    return f"{app}/{node}" if app else node


def _log_change(
    policy: str, node: str, current: int, desired: int, state: Mapping[str, Any]
) -> None:
    if desired != current:
        log.info(
            "servegraph %s policy: %s %d -> %d replicas (%s)",
            policy,
            node,
            current,
            desired,
            state.get(REASON_KEY, "-"),
        )


def node_policy(ctx: Any) -> tuple[int, dict[str, Any]]:
    """Deployment-level policy: one node, from its own metrics."""
    desired, state = decide(
        _settings(ctx), metrics_from_context(ctx), dict(ctx.policy_state or {}), _now(ctx)
    )
    name = getattr(ctx, "deployment_name", None) or "-"
    _log_change("node", _where(ctx, name), int(ctx.target_num_replicas), desired, state)
    return desired, state


def graph_policy(contexts: Mapping[Any, Any]) -> tuple[dict[Any, int], dict[Any, dict[str, Any]]]:
    """Application-level policy: every node of the graph at once.

    Deployments without our settings (e.g. autoscaled with Ray's default policy) keep their
    current target.
    """
    by_name = {
        getattr(dep_id, "name", str(dep_id)): (dep_id, ctx) for dep_id, ctx in contexts.items()
    }
    ours = {name: ctx for name, (_, ctx) in by_name.items() if "settings" in _kwargs(ctx)}
    edges = tuple(
        (name, child, float(share))
        for name, ctx in ours.items()
        for child, share in _kwargs(ctx).get("children", {}).items()
        if child in ours
    )
    topology = GraphTopology(nodes=tuple(ours), edges=edges)
    now = max((_now(ctx) for ctx in ours.values()), default=time.time())
    decisions, states = decide_graph(
        {name: _settings(ctx) for name, ctx in ours.items()},
        {name: metrics_from_context(ctx) for name, ctx in ours.items()},
        topology,
        {name: dict(ctx.policy_state or {}) for name, ctx in ours.items()},
        now,
    )
    out: dict[Any, int] = {}
    new_state: dict[Any, dict[str, Any]] = {}
    for name, (dep_id, ctx) in by_name.items():
        out[dep_id] = decisions.get(name, int(ctx.target_num_replicas))
        new_state[dep_id] = states.get(name, dict(ctx.policy_state or {}))
        target = int(ctx.target_num_replicas)
        _log_change("graph", _where(ctx, name), target, out[dep_id], new_state[dep_id])
    return out, new_state
