"""The scenario: a cheap node in front of a slow one, then a router sending 80/20 to two models,
all scaled together by the application-level policy ``autoscale.serve_policy:graph_policy``."""

from __future__ import annotations

from typing import Any

APP = "asgraph"
#: The graph-level policy, named on the application of the Serve config.
GRAPH_POLICY = "autoscale.serve_policy:graph_policy"
SLEEP = "graphs.examples.passthrough:Sleep"
BODY = {"inputs": {"x": [1.0]}}
SAMPLE_EVERY_S = 0.5
#: The deployments the policy sizes, in the order requests reach them (``split`` is fused into
#: the ingress: a router without deployment options of its own, under ``fusion: cheap``).
NODES = ("prep", "slow", "a", "b")
#: Who is downstream of whom among the deployments (the policy's topology).
DOWNSTREAM = {"prep": ("slow", "a", "b"), "slow": ("a", "b"), "a": (), "b": ()}
WEIGHTS = {"a": 0.8, "b": 0.2}
COLORS = {"prep": "tab:purple", "slow": "tab:red", "a": "tab:blue", "b": "tab:green"}
#: Mean requests waiting for a replica above which a node counts as queueing (the policy's
#: own threshold, ``autoscale.policy.WAITING``).
WAITING = 0.5
#: The policy anticipates (sizes a node from its callers' rate) when that rate is this many
#: times the node's own (``autoscale.policy.ANTICIPATION``).
ANTICIPATION = 1.1
#: The busy share a node is sized for from a rate (``ScalingSettings.target_utilisation``).
TARGET_UTILISATION = 0.75
#: Reasons of the graph policy that size a node from an arrival rate (its own while requests
#: wait, or the rate its callers send it).
RATE_REASONS = ("up:rate",)


def nodes(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The graph's nodes with their settings (the figures of ``spec``)."""
    models = {
        "num_cpus": 0,
        "kind": "model",
        "runtime": "python",
        "model_class": SLEEP,
    }
    return [
        {
            "name": "prep",
            "kind": "preprocess",
            "function": "graphs.examples.passthrough:identity",
            "num_cpus": 0,
            "max_ongoing_requests": 8,
            # A cheap node's target is what a replica takes at once: at the default (2) a
            # burst of 5 in flight, microseconds each, would read as twice the target.
            "autoscaling": {
                "target_queue_per_replica": 8,
                "min_replicas": 1,
                "max_replicas": 2,
                "upscale_cooldown_s": 2,
                "downscale_cooldown_s": 10,
            },
        },
        {
            **models,
            "name": "slow",
            "init_kwargs": {"seconds": spec["slow_ms"] / 1000.0},
            "max_ongoing_requests": 2,
            "autoscaling": {
                "slo_p95_ms": spec["slo_ms"],
                "target_queue_per_replica": 2,
                "min_replicas": 1,
                "max_replicas": spec["slow_max"],
                "upscale_cooldown_s": 2,
                "downscale_cooldown_s": 10,
                "max_step": spec["slow_max"],
            },
        },
        {
            "name": "split",
            "kind": "router",
            "seed": 0,
            "arms": [
                {"target": "a", "weight": WEIGHTS["a"]},
                {"target": "b", "weight": WEIGHTS["b"]},
            ],
        },
        *(
            {
                **models,
                "name": arm,
                "init_kwargs": {"seconds": spec["arm_ms"] / 1000.0},
                "max_ongoing_requests": 2,
                "autoscaling": {
                    "target_queue_per_replica": 2,
                    "min_replicas": 1,
                    "max_replicas": spec["arm_max"],
                    "upscale_cooldown_s": 2,
                    "downscale_cooldown_s": 10,
                },
            }
            for arm in ("a", "b")
        ),
    ]


def graph(spec: dict[str, Any]) -> dict[str, Any]:
    """ingress -> prep -> slow -> split (80 % a, 20 % b): the entry chain of three nodes."""
    tensor = [{"name": "x", "datatype": "FP32", "shape": [-1]}]
    return {
        "name": APP,
        "inputs": tensor,
        "outputs": tensor,
        "entry": ["prep", "slow", "split"],
        "nodes": nodes(spec),
        "ingress": {"num_cpus": 0},
    }


def serve_config(spec: dict[str, Any]) -> dict[str, Any]:
    """The Serve config (``serve deploy``'s input): the graph through the builder, scaled by
    the graph-level policy."""
    return {
        "applications": [
            {
                "name": APP,
                "route_prefix": f"/{APP}",
                "import_path": "graphs.builder:build_app",
                "args": {"graph": graph(spec)},
                "autoscaling_policy": {"policy_function": GRAPH_POLICY},
            }
        ]
    }


def settings(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each deployment's ``autoscaling:`` (what the checks read: bounds, targets)."""
    return {n["name"]: n["autoscaling"] for n in nodes(spec) if "autoscaling" in n}
