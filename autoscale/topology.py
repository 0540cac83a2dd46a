"""Who calls whom in a graph (:class:`GraphTopology`), built from a graph spec.

:func:`topology_from_spec` reads only what :class:`SpecLike` declares, so this module imports
nothing from :mod:`graphs`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["GraphTopology", "NodeLike", "SpecLike", "topology_from_spec"]


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


class NodeLike(Protocol):
    """What :func:`topology_from_spec` reads of a node spec."""

    @property
    def name(self) -> str: ...
    def calls(self) -> list[tuple[list[str], float]]: ...


class SpecLike(Protocol):
    """What :func:`topology_from_spec` reads of a graph spec (:class:`graphs.spec.GraphSpec`)."""

    @property
    def entry(self) -> str | list[str]: ...
    @property
    def nodes(self) -> Sequence[NodeLike]: ...


def topology_from_spec(spec: SpecLike) -> GraphTopology:
    """The topology of a graph spec: entry chain, router arms (by weight), ensemble members.

    The ingress is left out: it is not a node and its traffic is the graph's own.

    Args:
        spec: A validated graph.

    Returns:
        One node per spec node; an edge per entry chain step (1.0), router arm (its weight;
        steps of an arm's chain 1.0), shadow (its fraction) and ensemble member (1.0; steps of
        its chain 1.0).
    """
    edges: list[tuple[str, str, float]] = []
    entry = [spec.entry] if isinstance(spec.entry, str) else list(spec.entry)
    edges.extend((a, b, 1.0) for a, b in itertools.pairwise(entry))
    for node in spec.nodes:
        for chain, share in node.calls():
            edges.extend(_chain_edges(node.name, chain, share))
    return GraphTopology(nodes=tuple(n.name for n in spec.nodes), edges=tuple(edges))
