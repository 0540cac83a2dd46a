"""The graph spec: the frozen pydantic v2 model both front doors (Python DSL and YAML) produce.

A graph is its HTTP contract (inputs, outputs, limits) and its nodes; the node kinds live next to
the behaviour they configure (:mod:`nodes.spec`, :mod:`routing.spec`) and are re-exported here.
Rules that need the whole graph (references, cycles, imports, files) live in
:mod:`graphs.validate`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field

from nodes.observe_spec import ObserveSpec
from nodes.spec import (
    BUILTIN_COMBINERS,
    DATATYPES,
    NAME_PATTERN,
    BatchingSpec,
    DeploymentOptions,
    EngineSettings,
    EnsembleNode,
    Frozen,
    ModelNode,
    PreprocessNode,
    Ref,
    TensorSpec,
    check_gpus,
    refs,
)
from routing.limits import LimitsSpec, TenantLimits, TenantSource
from routing.spec import ROUTER_POLICIES, Arm, RouterNode, RouterStateSpec, ShadowSpec

__all__ = [
    "BUILTIN_COMBINERS",
    "DATATYPES",
    "INGRESS_NAME",
    "NAME_PATTERN",
    "ROUTER_POLICIES",
    "Arm",
    "BatchingSpec",
    "DeploymentOptions",
    "EngineSettings",
    "EnsembleNode",
    "GraphSpec",
    "LimitsSpec",
    "ModelNode",
    "Node",
    "ObserveSpec",
    "PreprocessNode",
    "Ref",
    "RouterNode",
    "RouterStateSpec",
    "ShadowSpec",
    "TenantLimits",
    "TenantSource",
    "TensorSpec",
    "check_gpus",
    "refs",
]

#: Deployment name of every graph's HTTP ingress; no node may take it.
INGRESS_NAME = "ingress"

Node = Annotated[
    PreprocessNode | ModelNode | RouterNode | EnsembleNode, Field(discriminator="kind")
]


class GraphSpec(Frozen):
    """A whole inference graph: its nodes, the flow the ingress runs, and its HTTP contract."""

    name: str = Field(
        pattern=NAME_PATTERN, description="Graph name: route prefix /<name> and OIP model name."
    )
    description: str = Field("", description="Shown in /graph and the OpenAPI docs.")
    version: str = Field("1", description="Model version reported over OIP.")
    inputs: list[TensorSpec] = Field(
        min_length=1, description="Input tensors requests must carry (OIP metadata)."
    )
    outputs: list[TensorSpec] = Field(
        default_factory=list, description="Output tensors the graph returns (OIP metadata)."
    )
    nodes: list[Node] = Field(min_length=1, description="Every node of the graph.")
    entry: Ref = Field(description="Node name or chain the ingress calls for each request.")
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Largest request body accepted; larger gets 413."
    )
    feedback_ttl_s: float = Field(
        86_400.0,
        gt=0,
        description="How long a response's feedback token is accepted by POST /<graph>/feedback.",
    )
    timeout_s: float = Field(
        30.0,
        gt=0,
        le=86_400,
        description="Deadline of each request (s), carried through every hop: work whose "
        "deadline has passed never starts, and expiry answers 504 naming the node. For "
        "streamed (LLM) responses it bounds the time to the first chunk and each gap between "
        "chunks instead of the whole stream.",
    )
    retry_budget: int = Field(
        2,
        ge=0,
        le=100,
        description="Most retries one request may spend across all its hops (see a node's "
        "retries), so a failing node cannot multiply the load on the graph.",
    )
    fusion: Literal["none", "cheap", "all"] = Field(
        "cheap",
        description="Which nodes run inside the deployment that calls them instead of one of "
        "their own: none; cheap (preprocess, router and ensemble nodes without deployment "
        "options of their own); all (every node but those with GPUs or deployment options of "
        "their own). A node's fuse overrides it.",
    )
    ingress: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(),
        description="Deployment options of the HTTP ingress (its deployment is named 'ingress').",
    )
    limits: LimitsSpec = Field(
        default_factory=lambda: LimitsSpec(),
        description="Admission control at the ingress: an in-flight cap per replica (503) and "
        "per-tenant rates and concurrency shared by the ingress replicas (429).",
    )
    observe: ObserveSpec | None = Field(
        None,
        description="Drift of inputs and outputs against a reference, reward per arm, and an "
        "inference log, sampled off the hot path in each ingress replica.",
    )

    def node(self, name: str) -> PreprocessNode | ModelNode | RouterNode | EnsembleNode:
        """The node called ``name``; KeyError when there is none."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def edges(self) -> Iterator[dict[str, str]]:
        """Every call edge: chain steps of the entry, router arms and ensemble members."""
        entry = refs(self.entry)
        yield {"from": INGRESS_NAME, "to": entry[0], "kind": "entry"}
        for a, b in itertools.pairwise(entry):
            yield {"from": a, "to": b, "kind": "then"}
        for node in self.nodes:
            targets: list[Ref] = []
            kind = ""
            if isinstance(node, RouterNode):
                targets, kind = [a.target for a in node.arms], "arm"
                if node.shadow is not None:
                    chain = refs(node.shadow.target)
                    yield {"from": node.name, "to": chain[0], "kind": "shadow"}
                    for a, b in itertools.pairwise(chain):
                        yield {"from": a, "to": b, "kind": "then"}
            elif isinstance(node, EnsembleNode):
                targets, kind = list(node.members), "member"
            for target in targets:
                chain = refs(target)
                yield {"from": node.name, "to": chain[0], "kind": kind}
                for a, b in itertools.pairwise(chain):
                    yield {"from": a, "to": b, "kind": "then"}
