"""Composable inference graphs on Ray Serve: the spec, the Python DSL, validation, the compiler.

Declare a graph in Python (:class:`Graph`) or YAML (:func:`load_graph`), then deploy the Ray Serve
application :func:`compile_graph` returns, or point a Serve config at :func:`build_app`.
"""

from graphs.builder import build_app, load_graph
from graphs.compiler import compile_graph
from graphs.dsl import Chain, Graph, NodeRef, tensor
from graphs.logs import JsonFormatter, RequestContext
from graphs.spec import (
    Arm,
    BatchingSpec,
    DeploymentOptions,
    EngineSettings,
    EnsembleNode,
    GraphSpec,
    LimitsSpec,
    ModelNode,
    ObserveSpec,
    PreprocessNode,
    RouterNode,
    TenantLimits,
    TenantSource,
    TensorSpec,
)
from graphs.traceparent import TraceParent, parse_traceparent
from graphs.validate import parse_graph
from nodes.errors import (
    GraphError,
    GraphValidationError,
    ModelNotFoundError,
    NodeError,
    OverloadedError,
    PayloadTooLargeError,
    QuorumError,
    RequestValidationError,
    UnauthorizedError,
)

__all__ = [
    "Arm",
    "BatchingSpec",
    "Chain",
    "DeploymentOptions",
    "EngineSettings",
    "EnsembleNode",
    "Graph",
    "GraphError",
    "GraphSpec",
    "GraphValidationError",
    "JsonFormatter",
    "LimitsSpec",
    "ModelNode",
    "ModelNotFoundError",
    "NodeError",
    "NodeRef",
    "ObserveSpec",
    "OverloadedError",
    "PayloadTooLargeError",
    "PreprocessNode",
    "QuorumError",
    "RequestContext",
    "RequestValidationError",
    "RouterNode",
    "TenantLimits",
    "TenantSource",
    "TensorSpec",
    "TraceParent",
    "UnauthorizedError",
    "build_app",
    "compile_graph",
    "load_graph",
    "parse_graph",
    "parse_traceparent",
    "tensor",
]
