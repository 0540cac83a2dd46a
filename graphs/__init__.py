"""Composable inference graphs on Ray Serve: the spec, the Python DSL, validation, the compiler.

Declare a graph in Python (:class:`Graph`) or YAML (:func:`load_graph`), then deploy the Ray Serve
application :func:`compile_graph` returns, or point a Serve config at :func:`build_app`.
"""

from graphs.builder import build_app, load_graph
from graphs.compiler import compile_graph
from graphs.dsl import Chain, Graph, NodeRef, tensor
from graphs.errors import (
    GraphError,
    GraphValidationError,
    ModelNotFoundError,
    NodeError,
    OverloadedError,
    PayloadTooLargeError,
    QuorumError,
    RequestValidationError,
)
from graphs.spec import (
    Arm,
    BatchingSpec,
    DeploymentOptions,
    EnsembleNode,
    GraphSpec,
    ModelNode,
    PreprocessNode,
    RouterNode,
    TensorSpec,
)
from graphs.validate import parse_graph

__all__ = [
    "Arm",
    "BatchingSpec",
    "Chain",
    "DeploymentOptions",
    "EnsembleNode",
    "Graph",
    "GraphError",
    "GraphSpec",
    "GraphValidationError",
    "ModelNode",
    "ModelNotFoundError",
    "NodeError",
    "NodeRef",
    "OverloadedError",
    "PayloadTooLargeError",
    "PreprocessNode",
    "QuorumError",
    "RequestValidationError",
    "RouterNode",
    "TensorSpec",
    "build_app",
    "compile_graph",
    "load_graph",
    "parse_graph",
    "tensor",
]
