"""Custom Ray Serve autoscaling policies for graph nodes .

The decisions are pure (:func:`decide` for one node, :func:`decide_graph` for a whole
graph): metrics, state and the clock in, replica counts and state out. The simulator replays
synthetic load through one node to compare our policy with Ray Serve's default, without Ray.
"""

from autoscale.graph_decision import decide_graph, expected_arrival_rates
from autoscale.metrics import NodeMetrics
from autoscale.policy import capacity_need, decide, queue_wait_ms
from autoscale.ray_default import RayDefaultConfig, ray_default_policy
from autoscale.serve_policy import autoscaling_config, graph_policy, node_policy
from autoscale.settings import ScalingSettings
from autoscale.simulator import (
    SimConfig,
    SimResult,
    compare,
    default_settings,
    simulate,
    tuned_ray_config,
)
from autoscale.stats import ReplicaStats
from autoscale.topology import GraphTopology, topology_from_spec
from autoscale.traces import LoadTrace, standard_traces

__all__ = [
    "GraphTopology",
    "LoadTrace",
    "NodeMetrics",
    "RayDefaultConfig",
    "ReplicaStats",
    "ScalingSettings",
    "SimConfig",
    "SimResult",
    "autoscaling_config",
    "capacity_need",
    "compare",
    "decide",
    "decide_graph",
    "default_settings",
    "expected_arrival_rates",
    "graph_policy",
    "node_policy",
    "queue_wait_ms",
    "ray_default_policy",
    "simulate",
    "standard_traces",
    "topology_from_spec",
    "tuned_ray_config",
]
