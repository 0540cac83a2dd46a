"""Pure autoscaling decision for a whole graph (:func:`decide_graph`).

Every node follows the one-node rules of :mod:`autoscale.policy`, sized for the arrival rate its
callers send it (:func:`expected_arrival_rates`), held while a node downstream is saturated, and
within an optional budget of replicas for the graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autoscale.metrics import NodeMetrics
from autoscale.policy import Proposal, commit_state, propose, serving_replicas
from autoscale.settings import ScalingSettings
from autoscale.topology import GraphTopology

__all__ = ["decide_graph", "expected_arrival_rates"]


def expected_arrival_rates(
    topology: GraphTopology, metrics_by_node: Mapping[str, NodeMetrics]
) -> dict[str, float | None]:
    """Arrival rate each node should expect: its own, or what its callers send it if more.

    ``expected[n] = max(own rate, sum over parents p of expected[p] * share(p -> n))``, in
    topological order, so a rise at the entry reaches every node downstream in one pass.
    None where neither the node nor any ancestor reports a rate.
    """
    expected: dict[str, float | None] = {}
    for n in topology.order():
        expected[n] = _expected(topology, metrics_by_node.get(n), expected, n)
    for n in metrics_by_node:
        if n not in expected:
            expected[n] = metrics_by_node[n].arrival_rate
    return expected


def _expected(
    topology: GraphTopology,
    m: NodeMetrics | None,
    outflow: Mapping[str, float | None],
    n: str,
) -> float | None:
    """``max(own rate, sum over parents p of outflow[p] * share(p -> n))``; None if unknown."""
    values = [m.arrival_rate] if m is not None and m.arrival_rate is not None else []
    inflow = [(outflow.get(p), share) for p, share in topology.parents(n).items()]
    known = [rate * share for rate, share in inflow if rate is not None]
    if known:
        values.append(sum(known))
    return max(values) if values else None


def _released(
    rate: float | None, p: Proposal, m: NodeMetrics, settings: ScalingSettings
) -> float | None:
    """What a node will pass on: its rate or, while requests wait for it and it grows, what
    the replicas it will have serve at its target utilisation (the demand it is sized for;
    its rate times new over serving replicas without a service time)."""
    serving = serving_replicas(m)
    if not p.waiting or serving <= 0 or p.desired <= serving:
        return rate
    if m.service_time_ms:
        sized = p.desired * 1000.0 / m.service_time_ms * settings.target_utilisation
        return max(rate or 0.0, sized)
    return None if rate is None else rate * p.desired / serving


def decide_graph(
    settings_by_node: Mapping[str, ScalingSettings],
    metrics_by_node: Mapping[str, NodeMetrics],
    topology: GraphTopology,
    state: Mapping[str, Mapping[str, Any]],
    now: float,
    *,
    max_total_replicas: int | None = None,
) -> tuple[dict[str, int], dict[str, Any]]:
    """Application-level policy: every node of a graph decided together.

    Each node follows :func:`decide`'s rules, with three changes:

    1. Anticipation: a node is sized for its *expected* arrival rate
       (:func:`expected_arrival_rates`: its callers' rates times the edge shares, when that
       is more than its own rate) instead of its own; a caller with requests waiting for it
       and more replicas wanted than serving sends what those replicas serve at its
       ``target_utilisation`` (``desired * 1000 / service_time_ms * target_utilisation``:
       its queue, released). So it needs ``ceil(expected_rate *
       service_time_ms / 1000 / target_utilisation)`` replicas, scales up to that count
       (reason ``up:rate``; step, cooldown and bounds as in :func:`decide`) before its own
       queue grows, and never scales down below what that rate needs.
    2. Saturated downstream: a node is saturated when requests wait for its replicas, or
       when its load or latency ratio is over 1 and it is at ``max_replicas`` or being
       scaled up this round. A node with a saturated
       descendant is not grown this round (held at its current count, reason
       ``hold:downstream_saturated``): more replicas upstream only move the queue down.
    3. Bottleneck first: with ``max_total_replicas``, scale-downs and holds are counted
       first, then the replicas left go to scale-ups in order of the highest load or
       latency ratio (ties: the highest ``need / current``, then the name); a node that gets
       fewer than it asked for takes what is left (reason ``hold:budget`` when nothing).
       Bounds come first: a node under ``min_replicas`` still gets ``min_replicas``.

    Args:
        settings_by_node: Settings per node; a node without an entry uses the defaults.
        metrics_by_node: Metrics per node; every node listed gets a decision.
        topology: Who calls whom (:func:`topology_from_spec`).
        state: Per-node state returned last time (``{}`` the first time).
        now: Current time in seconds (injected clock).
        max_total_replicas: Optional cap on the sum of all nodes' replicas.

    Returns:
        Desired replicas per node, and the new state per node (JSON-serialisable; maps
        one-to-one onto Ray Serve's per-deployment ``policy_state``).
    """
    if max_total_replicas is not None and max_total_replicas < 0:
        raise ValueError(f"max_total_replicas must be >= 0, got {max_total_replicas}")
    default = ScalingSettings()
    names = [n for n in topology.order() if n in metrics_by_node]
    names += [n for n in metrics_by_node if n not in names]
    # In topological order, so that a node's callers' proposals are known: a caller with a
    # queue that grows releases it downstream (the rise reaches its children this round).
    outflow: dict[str, float | None] = {}
    proposals: dict[str, Proposal] = {}
    in_graph = set(topology.order())
    for n in names:
        m = metrics_by_node[n]
        rate = _expected(topology, m, outflow, n) if n in in_graph else m.arrival_rate
        settings = settings_by_node.get(n, default)
        proposals[n] = propose(settings, m, state.get(n, {}), now, rate)
        outflow[n] = _released(rate, proposals[n], m, settings)

    current = {n: metrics_by_node[n].current_replicas for n in names}
    # What each node keeps whatever happens: its count, brought within its bounds.
    keep = {
        n: min(max(current[n], s.min_replicas), s.max_replicas)
        for n in names
        for s in [settings_by_node.get(n, default)]
    }
    growing = {n for n in names if proposals[n].desired > keep[n]}
    # Requests waiting for a replica: the node runs at its capacity (a queue its SLO lets be
    # included), so more upstream would only lengthen it.
    saturated = {
        n
        for n in names
        if proposals[n].waiting
        or (
            proposals[n].pressure > 1
            and (current[n] >= settings_by_node.get(n, default).max_replicas or n in growing)
        )
    }
    final = {n: proposals[n].desired for n in names}
    reasons = {n: proposals[n].reason for n in names}
    for n in growing:
        if topology.descendants(n) & saturated:
            final[n], reasons[n] = keep[n], "hold:downstream_saturated"

    if max_total_replicas is not None:
        ups = [n for n in names if final[n] > keep[n]]
        left = max_total_replicas - sum(min(final[n], keep[n]) for n in names)

        def rank(n: str) -> tuple[float, float, str]:
            cur = max(current[n], 1)
            return (-proposals[n].pressure, -proposals[n].need / cur, n)

        for n in sorted(ups, key=rank):
            grant = max(0, min(final[n] - keep[n], left))
            left -= grant
            if grant == 0:
                reasons[n] = "hold:budget"
            final[n] = keep[n] + grant

    new_state = {
        n: commit_state(proposals[n], current[n], final[n], state.get(n, {}), now, reasons[n])
        for n in names
    }
    return final, new_state
