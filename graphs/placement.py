"""Node fusion: which deployment each node of a graph runs in.

A node with a deployment of its own is called through a Ray Serve handle; a *fused* node runs
inside the deployment that calls it (a plain ``await`` in the same replica, no handle, no
serialisation). By default (``fusion: cheap``) preprocess, router and ensemble nodes are fused
into their caller (the ingress for the entry chain) unless they declare deployment options of
their own; model nodes keep their own deployment. ``fusion: all`` fuses model nodes too, except
those with GPUs or deployment options of their own; ``fusion: none`` fuses nothing. A node's
``fuse: true|false`` overrides the graph's setting.

A fused node called from two different deployments would become two instances: it keeps a
deployment of its own instead (a node used twice is still one instance).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from graphs.spec import INGRESS_NAME, GraphSpec, ModelNode, refs

__all__ = ["FUSION_MODES", "OWN_OPTIONS", "Placement", "own_options", "plan_placement"]

#: The graph-level fusion settings.
FUSION_MODES = ("none", "cheap", "all")

#: Node settings that ask for a deployment of the node's own when set in its spec.
OWN_OPTIONS = (
    "num_replicas",
    "num_cpus",
    "num_gpus",
    "memory_mb",
    "max_ongoing_requests",
    "max_queued_requests",
    "autoscaling_config",
    "autoscaling",
    "user_config",
    "graceful_shutdown_timeout_s",
)


@dataclass(frozen=True)
class Placement:
    """Where each node of a graph runs.

    Attributes:
        host: node name -> the deployment it runs in: its own name (a deployment of its own),
            ``ingress``, or the name of the node whose deployment hosts it.
        reasons: node name -> why it runs there, for the build output and ``/graph``.
    """

    host: Mapping[str, str]
    reasons: Mapping[str, str]

    def fused(self, node: str) -> bool:
        """Whether ``node`` runs inside another deployment."""
        return self.host[node] != node

    def deployments(self) -> list[str]:
        """Nodes with a deployment of their own (the ingress not included)."""
        return [n for n, h in self.host.items() if h == n]

    def hosted_in(self, deployment: str) -> list[str]:
        """The fused nodes that run inside ``deployment``."""
        return [n for n, h in self.host.items() if h == deployment and n != deployment]

    def describe(self) -> list[str]:
        """One line per node: where it runs and why."""
        return [f"{node}: {self.reasons[node]}" for node in self.host]


def own_options(node: object) -> list[str]:
    """The deployment options ``node`` sets itself (a GPU share counts even when 0 is not)."""
    fields_set: set[str] = getattr(node, "model_fields_set", set())
    own = [k for k in OWN_OPTIONS if k in fields_set and getattr(node, k, None) not in (None, 0.0)]
    if getattr(node, "num_gpus", 0) and "num_gpus" not in own:
        own.append("num_gpus")
    return own


def _wants_fusion(node: object, mode: str) -> tuple[bool, str]:
    """Whether ``node`` asks to be fused, and why (or why not)."""
    fuse = getattr(node, "fuse", None)
    if fuse is False:
        return False, "fuse: false"
    if fuse is True:
        return True, "fuse: true"
    if mode == "none":
        return False, "fusion: none"
    own = own_options(node)
    if own:
        return False, f"sets {', '.join(own)} of its own"
    if mode == "cheap" and isinstance(node, ModelNode):
        return False, "model nodes keep a deployment of their own under fusion: cheap"
    return True, f"fusion: {mode}"


def plan_placement(spec: GraphSpec) -> Placement:
    """Decide, for every node of ``spec``, the deployment it runs in (see the module doc)."""
    callers: dict[str, set[str]] = {n.name: set() for n in spec.nodes}
    for name in refs(spec.entry):
        callers[name].add(INGRESS_NAME)
    for node in spec.nodes:
        for child in node.children():
            callers[child].add(node.name)
    host: dict[str, str] = {}
    reasons: dict[str, str] = {}

    def resolve(name: str) -> str:
        if name == INGRESS_NAME:
            return INGRESS_NAME
        if name in host:
            return host[name]
        fuse, why = _wants_fusion(spec.node(name), spec.fusion)
        if fuse:
            hosts = sorted({resolve(caller) for caller in callers[name]})
            if len(hosts) == 1:
                host[name] = hosts[0]
                reasons[name] = f"fused into {hosts[0]} ({why})"
                return hosts[0]
            why = (
                f"called from {len(hosts)} deployments ({', '.join(hosts)}); one instance "
                "needs a deployment of its own"
                if hosts
                else "called by no node"
            )
        host[name] = name
        reasons[name] = f"own deployment ({why})"
        return name

    for node in spec.nodes:
        resolve(node.name)
    return Placement(host=host, reasons=reasons)
