"""Compile a validated graph into one Ray Serve application: the ingress, and a deployment for
each node that has one of its own (the others are fused into their caller's)."""

from __future__ import annotations

import logging
from typing import Any, cast

from ray.serve.deployment import Application

from autoscale.serve_policy import autoscaling_config
from autoscale.topology import topology_from_spec
from graphs.cluster import replica_env
from graphs.defaults import default_max_queued, max_ongoing
from graphs.guards import call_settings
from graphs.ingress import GraphIngress
from graphs.logs import forwarded_env
from graphs.placement import Placement, plan_placement
from graphs.replica import NodeReplica
from graphs.spec import DeploymentOptions, GraphSpec
from graphs.validate import parse_graph

logger = logging.getLogger(__name__)


def deployment_options(
    opts: DeploymentOptions, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Ray Serve ``.options()`` for one node or the ingress, from its spec; ``env``: variables
    for the replicas' ``runtime_env`` (see :func:`graphs.cluster.replica_env`)."""
    actor: dict[str, Any] = {"num_cpus": opts.num_cpus}
    if opts.num_gpus:
        actor["num_gpus"] = opts.num_gpus
    if opts.memory_mb:
        actor["memory"] = opts.memory_mb * 1024 * 1024
    if env:
        actor["runtime_env"] = {"env_vars": dict(env)}
    ongoing = max_ongoing(opts)
    options: dict[str, Any] = {
        "ray_actor_options": actor,
        "max_ongoing_requests": ongoing,
        # Bounded queues by default (graphs.defaults); the spec's own setting wins below.
        "max_queued_requests": default_max_queued(ongoing),
    }
    for key in (
        "num_replicas",
        "max_queued_requests",
        "autoscaling_config",
        "graceful_shutdown_timeout_s",
    ):
        value = getattr(opts, key)
        if value is not None:
            options[key] = value
    return options


def _node_options(node: Any, children: dict[str, float], env: dict[str, str]) -> dict[str, Any]:
    options = deployment_options(node, env)
    if getattr(node, "user_config", None) is not None:
        options["user_config"] = node.user_config
    if node.autoscaling is not None:
        options["autoscaling_config"] = autoscaling_config(node.autoscaling, children)
    return options


def deployment_children(topology: Any, placement: Placement, name: str) -> dict[str, float]:
    """The deployments that deployment ``name`` calls, with their shares of its traffic: a
    fused child is looked through to the deployments it calls."""
    out: dict[str, float] = {}

    def walk(node: str, share: float) -> None:
        for child, part in topology.children(node).items():
            if placement.fused(child):
                walk(child, share * part)
            else:
                out[child] = out.get(child, 0.0) + share * part

    walk(name, 1.0)
    return out


def compile_graph(spec: GraphSpec, *, validate: bool = True) -> Application:
    """The Ray Serve application for ``spec``.

    Every replica's ``runtime_env`` carries :func:`graphs.cluster.replica_env` (the replica
    switches the build environment leaves unset) and :func:`graphs.logs.forwarded_env` (its
    logging and tracing settings).

    Each node with a deployment of its own (see :mod:`graphs.placement`) becomes one deployment
    named after it, hosting the nodes fused into it and bound to handles of the deployments it
    calls; the ingress deployment ``ingress`` hosts the nodes fused into it and holds handles to
    every other deployment. A node used twice is still one instance.

    Args:
        spec: the graph.
        validate: run build-time validation first (skip only for an already validated spec).
    """
    if validate:
        spec = parse_graph(spec)
    placement = plan_placement(spec)
    for line in placement.describe():  # the build output says where each node runs, and why
        logger.info("graph %s: %s", spec.name, line)
    topology = topology_from_spec(spec)
    env = {**replica_env(), **forwarded_env()}  # logging and tracing settings reach replicas
    settings = call_settings(spec.nodes)
    bound: dict[str, Any] = {}

    def _settings(node: Any, hosted: list[Any]) -> dict[str, Any]:
        # Only the nodes this deployment calls: a change elsewhere does not restart it.
        called = {c for n in (node, *hosted) for c in n.children()}
        return {c: settings[c] for c in sorted(called)}

    def bind(name: str) -> Any:
        if name not in bound:
            node = spec.node(name)
            hosted = [spec.node(n) for n in placement.hosted_in(name)]
            calls = {c for n in (node, *hosted) for c in n.children() if not placement.fused(c)}
            children = deployment_children(topology, placement, name)
            bound[name] = (
                cast(Any, NodeReplica)
                .options(name=name, **_node_options(node, children, env))
                .bind(
                    node,
                    {c: bind(c) for c in sorted(calls)},
                    hosted,
                    _settings(node, hosted),
                    spec.name,
                )
            )
        return bound[name]

    for name in placement.deployments():
        bind(name)
    ingress = cast(Any, GraphIngress).options(**deployment_options(spec.ingress, env))
    return ingress.bind(spec, dict(bound))
