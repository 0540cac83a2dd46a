"""The Python front door: declare a graph with objects, get the same spec YAML gives.

Example:
    >>> g = Graph("demo", inputs=[tensor("x", "FP32", [-1])])
    >>> @g.preprocess
    ... def double(payload):
    ...     return {"x": payload["x"] * 2}
    >>> g.entry = double
    >>> g.spec().entry
    'double'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, overload

from ray.serve.deployment import Application

from graphs.compiler import compile_graph
from graphs.spec import GraphSpec, Ref, TensorSpec
from graphs.validate import parse_graph


def tensor(name: str, datatype: str = "FP32", shape: Sequence[int] = (-1,)) -> TensorSpec:
    """An input or output tensor of a graph."""
    return TensorSpec(name=name, datatype=datatype, shape=list(shape))


class NodeRef:
    """A node declared on a graph; ``a >> b`` chains nodes."""

    def __init__(self, name: str):
        self.name = name

    def __rshift__(self, other: NodeRef | Chain) -> Chain:
        return Chain([self.name]) >> other

    def __repr__(self) -> str:
        return f"NodeRef({self.name!r})"


class Chain:
    """Nodes called in turn, each output feeding the next."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)

    def __rshift__(self, other: NodeRef | Chain) -> Chain:
        return Chain(
            self.names + _ref(other) if isinstance(other, Chain) else self.names + [other.name]
        )

    def __repr__(self) -> str:
        return " >> ".join(self.names)


Target = NodeRef | Chain | str | Sequence[str]


def _ref(target: Target) -> Any:
    if isinstance(target, NodeRef):
        return target.name
    if isinstance(target, Chain):
        return list(target.names)
    return target if isinstance(target, str) else list(target)


class Graph:
    """A graph under construction.

    Args:
        name: graph name (route prefix ``/<name>`` and OIP model name).
        inputs: input tensors requests must carry.
        outputs: output tensors (OIP metadata).
        **options: other :class:`~graphs.spec.GraphSpec` fields (description, max_body_bytes...).
    """

    def __init__(
        self,
        name: str,
        *,
        inputs: Sequence[TensorSpec | Mapping[str, Any]],
        outputs: Sequence[TensorSpec | Mapping[str, Any]] = (),
        **options: Any,
    ):
        self.name = name
        self._fields: dict[str, Any] = {
            "name": name,
            "inputs": list(inputs),
            "outputs": list(outputs),
            **options,
        }
        self._nodes: list[dict[str, Any]] = []
        self.entry: Target | None = None

    def _add(self, kind: str, name: str, fields: dict[str, Any]) -> NodeRef:
        if fields.get("fallback") is not None:  # a node or chain, as arms and members take
            fields = {**fields, "fallback": _ref(fields["fallback"])}
        self._nodes.append({"kind": kind, "name": name, **fields})
        return NodeRef(name)

    @overload
    def preprocess(self, function: Callable[..., Any], /) -> NodeRef: ...
    @overload
    def preprocess(self, function: str, /, *, name: str, **options: Any) -> NodeRef: ...
    @overload
    def preprocess(
        self, function: None = None, /, *, name: str | None = None, **options: Any
    ) -> Callable[[Callable[..., Any]], NodeRef]: ...

    def preprocess(
        self, function: Any = None, /, *, name: str | None = None, **options: Any
    ) -> Any:
        """Add a preprocess node; works bare (``@g.preprocess``), with arguments, or called."""

        def add(fn: Any) -> NodeRef:
            node_name = name or getattr(fn, "__name__", None)
            if not node_name or (isinstance(fn, str) and name is None):
                raise ValueError(
                    "give the node a name=... (it cannot be taken from an import path)"
                )
            return self._add("preprocess", node_name, {"function": fn, **options})

        return add if function is None else add(function)

    def model(self, name: str, *, runtime: str, **options: Any) -> NodeRef:
        """Add a model node (runtime ``onnx``, ``torch`` or ``python``)."""
        return self._add("model", name, {"runtime": runtime, **options})

    def router(
        self,
        name: str,
        arms: Mapping[Any, float] | Sequence[tuple[Target, float]] | Sequence[Target],
        **options: Any,
    ) -> NodeRef:
        """Add a router node; ``arms`` maps each target (node, chain or name) to its weight, or
        lists targets alone (an equal split; canary and bandit routers set the split)."""
        items = list(arms.items()) if isinstance(arms, Mapping) else list(arms)
        spec_arms = []
        for item in items:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], (int, float)):
                spec_arms.append({"target": _ref(item[0]), "weight": item[1]})
            else:
                spec_arms.append({"target": _ref(item)})
        shadow = options.get("shadow")
        if isinstance(shadow, Mapping) and "target" in shadow:
            options["shadow"] = {**shadow, "target": _ref(shadow["target"])}
        return self._add("router", name, {"arms": spec_arms, **options})

    def ensemble(self, name: str, members: Sequence[Target], **options: Any) -> NodeRef:
        """Add an ensemble node over ``members`` (nodes or chains)."""
        return self._add("ensemble", name, {"members": [_ref(m) for m in members], **options})

    def spec(self) -> GraphSpec:
        """The validated spec (raises GraphValidationError naming every problem)."""
        entry: Ref | None = _ref(self.entry) if self.entry is not None else None
        data = {**self._fields, "nodes": self._nodes}
        if entry is not None:
            data["entry"] = entry
        data["inputs"] = [
            t.model_dump() if isinstance(t, TensorSpec) else t for t in data["inputs"]
        ]
        data["outputs"] = [
            t.model_dump() if isinstance(t, TensorSpec) else t for t in data["outputs"]
        ]
        return parse_graph(data)

    def build(self) -> Application:
        """The Ray Serve application (``serve.run(g.build(), route_prefix=f"/{g.name}")``)."""
        return compile_graph(self.spec(), validate=False)

    def __repr__(self) -> str:
        names = ", ".join(n["name"] for n in self._nodes)
        return f"Graph({self.name!r}, nodes=[{names}], entry={self.entry!r})"
