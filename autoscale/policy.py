"""Pure autoscaling decisions: one node (:func:`decide`) and a whole graph (:func:`decide_graph`).

Nothing here touches Ray: metrics, state and the clock come in, a replica count and the new
state go out. The state is a plain JSON-serialisable dict, so Ray Serve can keep it as the
deployment's ``policy_state`` between control-loop ticks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autoscale.settings import ScalingSettings

if TYPE_CHECKING:
    from graphs.spec import GraphSpec

#: Keys of one node's policy state.
LAST_CHANGE_KEY = "last_change_s"
COMFORTABLE_SINCE_KEY = "comfortable_since_s"
REASON_KEY = "reason"

# Clock values are differences of large floats; a cooldown of 30 s must not read as 29.999...
_EPS_S = 1e-6


@dataclass(frozen=True)
class NodeMetrics:
    """What one node's replicas reported over the recent window.

    Attributes:
        current_replicas: Replicas the node has or is starting (Ray's ``target_num_replicas``);
            decisions are made relative to this count.
        ongoing_requests: Requests running or queued, summed over replicas (Ray's
            ``total_num_requests``), averaged over a short recent window.
        queued_requests: The part of ``ongoing_requests`` still waiting for a replica.
        p95_ms: p95 latency (ms) of requests that finished in the recent window; None when
            none finished.
        arrival_rate: Requests per second arriving at the node in the recent window.
        service_time_ms: Mean replica time one request costs (ms): its processing time, or
            processing time divided by the requests a replica serves at once.
    """

    current_replicas: int
    ongoing_requests: float
    queued_requests: float = 0.0
    p95_ms: float | None = None
    arrival_rate: float | None = None
    service_time_ms: float | None = None

    def __post_init__(self) -> None:
        if self.current_replicas < 0:
            raise ValueError(f"current_replicas must be >= 0, got {self.current_replicas}")
        for name in ("ongoing_requests", "queued_requests"):
            value = getattr(self, name)
            if value < 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        for name in ("p95_ms", "arrival_rate", "service_time_ms"):
            value = getattr(self, name)
            if value is not None and (value < 0 or not math.isfinite(value)):
                raise ValueError(f"{name} must be None or a finite number >= 0, got {value}")


@dataclass(frozen=True)
class _Proposal:
    """What one node would do on its own, before graph-level rules."""

    desired: int
    load_ratio: float
    latency_ratio: float
    need: int
    comfortable: bool
    reason: str

    @property
    def pressure(self) -> float:
        return max(self.load_ratio, self.latency_ratio)


def _ratios(settings: ScalingSettings, m: NodeMetrics) -> tuple[float, float]:
    """Load ratio (ongoing per replica / target) and latency ratio (p95 / SLO; 0 if unknown)."""
    if m.current_replicas == 0:
        load = math.inf if m.ongoing_requests > 0 else 0.0
    else:
        load = m.ongoing_requests / m.current_replicas / settings.target_queue_per_replica
    latency = 0.0
    if settings.slo_p95_ms is not None and m.p95_ms is not None:
        latency = m.p95_ms / settings.slo_p95_ms
    return load, latency


def capacity_need(rate: float | None, service_time_ms: float | None, utilisation: float) -> int:
    """Replicas that serve ``rate`` req/s of ``service_time_ms`` each at ``utilisation``.

    ``ceil(rate * service_time_ms / 1000 / utilisation)``; 0 when either is unknown.
    """
    if not rate or not service_time_ms:
        return 0
    return math.ceil(rate * service_time_ms / 1000.0 / utilisation - 1e-9)


def _propose(
    settings: ScalingSettings,
    m: NodeMetrics,
    state: Mapping[str, Any],
    now: float,
    rate: float | None,
) -> _Proposal:
    """Apply :func:`decide`'s rules, sizing for arrival ``rate`` (own or anticipated)."""
    cur, lo, hi = m.current_replicas, settings.min_replicas, settings.max_replicas
    load, latency = _ratios(settings, m)
    pressure = max(load, latency)
    # Aim a scale-down midway between the headroom and the target, so the next reading
    # lands inside the hysteresis band rather than back over the target.
    fill = (1.0 + settings.downscale_headroom) / 2.0
    util = settings.target_utilisation
    need = min(capacity_need(rate, m.service_time_ms, util), hi)
    down_floor = min(capacity_need(rate, m.service_time_ms, util * fill), hi)

    def out(desired: int, reason: str, comfortable: bool = False) -> _Proposal:
        return _Proposal(desired, load, latency, need, comfortable, reason)

    if cur < lo:
        return out(lo, "up:min_replicas")
    if cur > hi:
        return out(hi, "down:max_replicas")
    if cur == 0:
        if m.ongoing_requests <= 0 and need <= 0:
            return out(0, "hold:idle", comfortable=True)
        wanted = max(1, math.ceil(m.ongoing_requests / settings.target_queue_per_replica), need)
        return out(min(wanted, settings.max_step, hi), "up:cold_start")

    if pressure > 1 or need > cur:
        if cur >= hi:
            return out(cur, "hold:max_replicas")
        last_change = state.get(LAST_CHANGE_KEY)
        if last_change is not None and now - last_change + _EPS_S < settings.upscale_cooldown_s:
            return out(cur, "hold:upscale_cooldown")
        proportional = math.ceil(cur * pressure - 1e-9) if pressure > 1 else cur
        desired = max(proportional, need, cur + 1)
        if need > proportional:
            reason = "up:rate"
        else:
            reason = "up:latency" if latency > load else "up:load"
        return out(min(desired, cur + settings.max_step, hi), reason)

    comfortable = load < settings.downscale_headroom and latency < settings.downscale_headroom
    if not comfortable:
        return out(cur, "hold")
    if cur <= lo:
        return out(cur, "hold:min_replicas", comfortable=True)
    since = state.get(COMFORTABLE_SINCE_KEY)
    since = now if since is None else since
    if now - since + _EPS_S < settings.downscale_cooldown_s:
        return out(cur, "hold:downscale_cooldown", comfortable=True)
    desired = max(math.ceil(cur * pressure / fill - 1e-9), down_floor, lo, cur - settings.max_step)
    if desired >= cur:
        return out(cur, "hold:no_room", comfortable=True)
    return out(desired, "down", comfortable=True)


def _commit(
    p: _Proposal, current: int, final: int, state: Mapping[str, Any], now: float, reason: str
) -> dict[str, Any]:
    """The state after ``final`` replicas were chosen (``p`` was the node's own proposal)."""
    new: dict[str, Any] = dict(state)
    if final != current:
        new[LAST_CHANGE_KEY] = now
        # After a scale-down the next step needs another full cooldown of comfort.
        new[COMFORTABLE_SINCE_KEY] = now if final < current else None
    elif p.comfortable and final == p.desired:
        since = state.get(COMFORTABLE_SINCE_KEY)
        new[COMFORTABLE_SINCE_KEY] = now if since is None else since
    else:
        new[COMFORTABLE_SINCE_KEY] = None
    new.setdefault(LAST_CHANGE_KEY, None)
    new[REASON_KEY] = reason
    return new


def decide(
    settings: ScalingSettings, metrics: NodeMetrics, state: Mapping[str, Any], now: float
) -> tuple[int, dict[str, Any]]:
    """Desired replica count of one node, and its new policy state.

    Let ``cur = metrics.current_replicas``, ``load = ongoing_requests / cur /
    target_queue_per_replica``, ``latency = p95_ms / slo_p95_ms`` (0 without an SLO or a
    p95) and, when ``arrival_rate`` and ``service_time_ms`` are both known, ``need =
    ceil(arrival_rate * service_time_ms / 1000 / target_utilisation)`` (the replicas that
    serve the arrivals at the target utilisation; 0 otherwise). The rules, first match wins:

    1. Bounds: ``cur < min_replicas`` returns ``min_replicas``; ``cur > max_replicas`` returns
       ``max_replicas`` at once (no cooldown, no step limit).
    2. Cold start: from 0 replicas with requests waiting, return
       ``max(1, ceil(ongoing / target_queue_per_replica), need)``, at most ``max_step`` and
       ``max_replicas``, at once, like Ray Serve's cold-start path.
    3. Scale up when ``max(load, latency) > 1`` or ``need > cur``: to
       ``max(ceil(cur * max(load, latency)), need, cur + 1)``, at most ``cur + max_step`` and
       ``max_replicas``. Held at ``cur`` while less than ``upscale_cooldown_s`` has passed
       since the last change (up or down) -- new replicas are still starting -- or at
       ``max_replicas``.
    4. Scale down only when ``load`` and ``latency`` are both below ``downscale_headroom``
       (the node is *comfortable*) and have been for ``downscale_cooldown_s`` without a
       break: the state remembers since when (``comfortable_since_s``). A reading that is not
       comfortable resets that timer, and so does every change of replica count, so each
       step down needs a full cooldown. With ``fill = (1 + downscale_headroom) / 2``, the step
       goes to ``max(ceil(cur * max(load, latency) / fill), ceil(arrival_rate *
       service_time_ms / 1000 / (target_utilisation * fill)))`` replicas -- the second term
       keeps enough capacity for the arrivals, which queue length alone cannot show while
       replicas keep up -- removing at most ``max_step`` and never going below
       ``min_replicas``. When that removes nothing the node holds.
    5. Otherwise hold at ``cur``.

    The result is always within ``[min_replicas, max_replicas]``.

    Args:
        settings: The node's scaling settings.
        metrics: The node's recent metrics.
        state: The state this function returned last time (``{}`` the first time).
        now: The current time in seconds (any monotonic clock; injected for tests).

    Returns:
        The desired replica count and the new state: a JSON-serialisable dict with
        ``last_change_s``, ``comfortable_since_s`` and ``reason`` (e.g. ``"up:load"``,
        ``"hold:upscale_cooldown"``, ``"down"``), to pass back on the next call.
    """
    p = _propose(settings, metrics, state, now, metrics.arrival_rate)
    return p.desired, _commit(p, metrics.current_replicas, p.desired, state, now, p.reason)


@dataclass(frozen=True)
class GraphTopology:
    """Who calls whom in a graph, and what share of the caller's traffic each callee gets.

    Attributes:
        nodes: Every node name (endpoints of ``edges`` are added when missing).
        edges: ``(parent, child, share)``: the child receives ``share`` times the parent's
            arrival rate through this edge (router arm: its weight; ensemble member and
            chain step: 1.0). Repeated pairs are merged by adding their shares.
    """

    nodes: tuple[str, ...] = ()
    edges: tuple[tuple[str, str, float], ...] = ()

    def __post_init__(self) -> None:
        merged: dict[tuple[str, str], float] = {}
        for parent, child, share in self.edges:
            if share < 0 or not math.isfinite(share):
                raise ValueError(f"edge {parent} -> {child}: share must be >= 0, got {share}")
            if parent == child:
                raise ValueError(f"edge {parent} -> {child}: a node cannot call itself")
            merged[(parent, child)] = merged.get((parent, child), 0.0) + float(share)
        names = list(dict.fromkeys(self.nodes))
        for parent, child in merged:
            for n in (parent, child):
                if n not in names:
                    names.append(n)
        object.__setattr__(self, "nodes", tuple(names))
        object.__setattr__(self, "edges", tuple((p, c, s) for (p, c), s in merged.items()))

    @classmethod
    def from_mapping(cls, children: Mapping[str, Mapping[str, float]]) -> GraphTopology:
        """Build from ``{parent: {child: share}}``, e.g. ``{"router": {"a": 0.7, "b": 0.3}}``."""
        return cls(
            nodes=tuple(children),
            edges=tuple((p, c, s) for p, kids in children.items() for c, s in kids.items()),
        )

    def children(self, name: str) -> dict[str, float]:
        """The nodes ``name`` calls, with their shares."""
        return {c: s for p, c, s in self.edges if p == name}

    def parents(self, name: str) -> dict[str, float]:
        """The nodes that call ``name``, with the share of their traffic it gets."""
        return {p: s for p, c, s in self.edges if c == name}

    def descendants(self, name: str) -> frozenset[str]:
        """Every node reachable from ``name`` (not ``name`` itself)."""
        seen: set[str] = set()
        todo = list(self.children(name))
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(self.children(n))
        seen.discard(name)
        return frozenset(seen)

    def order(self) -> tuple[str, ...]:
        """Nodes with every parent before its children (declared order where free)."""
        indegree = {n: 0 for n in self.nodes}
        for _, c, _ in self.edges:
            indegree[c] += 1
        ready = [n for n in self.nodes if indegree[n] == 0]
        out: list[str] = []
        while ready:
            n = ready.pop(0)
            out.append(n)
            for c in self.children(n):
                indegree[c] -= 1
                if indegree[c] == 0:
                    ready.append(c)
        # A cycle (rejected by graph validation anyway) keeps its nodes in declared order.
        return tuple(out + [n for n in self.nodes if n not in out])


def _chain_edges(head: str, chain: list[str], share: float) -> Iterable[tuple[str, str, float]]:
    yield head, chain[0], share
    for a, b in itertools.pairwise(chain):
        yield a, b, 1.0


def topology_from_spec(spec: GraphSpec) -> GraphTopology:
    """The topology of a graph spec: entry chain, router arms (by weight), ensemble members.

    The ingress is left out: it is not a node and its traffic is the graph's own.

    Args:
        spec: A validated graph.

    Returns:
        One node per spec node; an edge per entry chain step (1.0), router arm (its weight;
        steps of an arm's chain 1.0) and ensemble member (1.0; steps of its chain 1.0).
    """
    from graphs.spec import EnsembleNode, RouterNode, refs

    edges: list[tuple[str, str, float]] = []
    entry = refs(spec.entry)
    edges.extend((a, b, 1.0) for a, b in itertools.pairwise(entry))
    for node in spec.nodes:
        if isinstance(node, RouterNode):
            for arm, weight in zip(node.arms, node.weights()):
                edges.extend(_chain_edges(node.name, refs(arm.target), weight))
            if node.shadow is not None:  # mirrored traffic loads the shadow target too
                edges.extend(
                    _chain_edges(node.name, refs(node.shadow.target), node.shadow.fraction)
                )
        elif isinstance(node, EnsembleNode):
            for member in node.members:
                edges.extend(_chain_edges(node.name, refs(member), 1.0))
    return GraphTopology(nodes=tuple(n.name for n in spec.nodes), edges=tuple(edges))


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
        m = metrics_by_node.get(n)
        values = [m.arrival_rate] if m is not None and m.arrival_rate is not None else []
        inflow = [(expected.get(p), share) for p, share in topology.parents(n).items()]
        known = [rate * share for rate, share in inflow if rate is not None]
        if known:
            values.append(sum(known))
        expected[n] = max(values) if values else None
    for n in metrics_by_node:
        if n not in expected:
            expected[n] = metrics_by_node[n].arrival_rate
    return expected


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
       is more than its own rate) instead of its own. So it needs ``ceil(expected_rate *
       service_time_ms / 1000 / target_utilisation)`` replicas, scales up to that count
       (reason ``up:rate``; step, cooldown and bounds as in :func:`decide`) before its own
       queue grows, and never scales down below what that rate needs.
    2. Saturated downstream: a node is saturated when its load or latency ratio is over 1
       and it is at ``max_replicas`` or being scaled up this round. A node with a saturated
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
    expected = expected_arrival_rates(topology, metrics_by_node)

    proposals = {
        n: _propose(
            settings_by_node.get(n, default),
            metrics_by_node[n],
            state.get(n, {}),
            now,
            expected.get(n),
        )
        for n in names
    }

    current = {n: metrics_by_node[n].current_replicas for n in names}
    # What each node keeps whatever happens: its count, brought within its bounds.
    keep = {
        n: min(max(current[n], s.min_replicas), s.max_replicas)
        for n in names
        for s in [settings_by_node.get(n, default)]
    }
    growing = {n for n in names if proposals[n].desired > keep[n]}
    saturated = {
        n
        for n in names
        if proposals[n].pressure > 1
        and (current[n] >= settings_by_node.get(n, default).max_replicas or n in growing)
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
        n: _commit(proposals[n], current[n], final[n], state.get(n, {}), now, reasons[n])
        for n in names
    }
    return final, new_state
