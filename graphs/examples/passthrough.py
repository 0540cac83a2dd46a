"""A chain of N pass-through nodes: the graph the overhead benchmark compares with hand-written
Ray Serve chains (``loadtests/yardsticks/handwritten*.py``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ray.serve.deployment import Application

from graphs.builder import fusion_arg
from graphs.compiler import compile_graph
from graphs.spec import GraphSpec
from graphs.validate import parse_graph


def identity(payload: dict[str, Any]) -> dict[str, Any]:
    """Return the payload unchanged."""
    return payload


class Identity:
    """A pass-through model (``runtime: python``): returns its input unchanged."""

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        return payload


class Sleep:
    """A stand-in for a slow model: sleeps ``seconds`` per call, then returns its input."""

    def __init__(self, seconds: float = 0.1):
        self.seconds = seconds

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        time.sleep(self.seconds)
        return payload


def spec(hops: int = 3, name: str = "passthrough", fusion: str = "cheap") -> GraphSpec:
    """A graph of ``hops`` preprocess nodes in a chain, each returning its input; with the
    default ``fusion: cheap`` they all run in the ingress's replicas, with ``none`` each has a
    deployment of its own."""
    names = [f"hop{i}" for i in range(hops)]
    return parse_graph(
        {
            "name": name,
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
            "outputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
            "entry": names,
            "fusion": fusion,
            "nodes": [
                {
                    "name": n,
                    "kind": "preprocess",
                    "function": "graphs.examples.passthrough:identity",
                }
                for n in names
            ],
            "ingress": {"num_cpus": 0},
        }
    )


def build_app(args: Mapping[str, Any]) -> Application:
    """Serve builder: ``args = {"hops": N, "name"?: str, "fusion"?: none|cheap|all}``."""
    graph = spec(
        int(args.get("hops", 3)),
        str(args.get("name", "passthrough")),
        fusion_arg(args.get("fusion", "cheap")),
    )
    return compile_graph(graph, validate=False)
