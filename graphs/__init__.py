"""Composable inference graphs on Ray Serve: the spec, the Python DSL, validation, the compiler.

Declare a graph in Python (:class:`Graph`) or YAML (:func:`load_graph`), then deploy the Ray Serve
application :func:`compile_graph` returns, or point a Serve config at :func:`build_app`.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from graphs.errors import (
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

if TYPE_CHECKING:
    from graphs.builder import build_app, load_graph
    from graphs.compiler import compile_graph
    from graphs.dsl import Chain, Graph, NodeRef, tensor
    from graphs.spec import (
        Arm,
        BatchingSpec,
        DeploymentOptions,
        EngineSettings,
        EnsembleNode,
        GraphSpec,
        ModelNode,
        PreprocessNode,
        RouterNode,
        TensorSpec,
    )
    from graphs.validate import parse_graph

#: Public names imported on first use, so that ``graphs.errors`` (which the router policies
#: import) stays light and free of import cycles.
_LAZY = {
    "build_app": "graphs.builder",
    "load_graph": "graphs.builder",
    "compile_graph": "graphs.compiler",
    "Chain": "graphs.dsl",
    "Graph": "graphs.dsl",
    "NodeRef": "graphs.dsl",
    "tensor": "graphs.dsl",
    "Arm": "graphs.spec",
    "BatchingSpec": "graphs.spec",
    "DeploymentOptions": "graphs.spec",
    "EngineSettings": "graphs.spec",
    "EnsembleNode": "graphs.spec",
    "GraphSpec": "graphs.spec",
    "ModelNode": "graphs.spec",
    "PreprocessNode": "graphs.spec",
    "RouterNode": "graphs.spec",
    "TensorSpec": "graphs.spec",
    "parse_graph": "graphs.validate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'graphs' has no attribute {name!r}")


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
    "UnauthorizedError",
    "build_app",
    "compile_graph",
    "load_graph",
    "parse_graph",
    "tensor",
]
