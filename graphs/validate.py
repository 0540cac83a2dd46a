"""Build-time validation: parse a graph and check the rules that need the whole graph.

Every problem is reported with its config path (``graph.nodes[2].arms``), the rule and the value,
and all problems are reported at once, before anything is deployed.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from graphs.observe_config import check_observe, observe_paths
from graphs.placement import own_options, plan_placement
from graphs.spec import (
    BUILTIN_COMBINERS,
    INGRESS_NAME,
    DeploymentOptions,
    EnsembleNode,
    GraphSpec,
    ModelNode,
    PreprocessNode,
    RouterNode,
    refs,
)
from nodes.errors import GraphValidationError, error_field, error_message
from nodes.imports import resolve
from nodes.llm import unknown_engine_args

_NODE_KINDS = ("preprocess", "model", "router", "ensemble")
_BANDIT_ALGORITHMS = ("epsilon_greedy", "ucb1", "thompson_beta", "thompson_gaussian", "linucb")


def _is_tag(loc: tuple[Any, ...], i: int) -> bool:
    """Whether ``loc[i]`` is a discriminated union's tag, not a key the user wrote."""
    part = loc[i]
    return (i >= 2 and loc[i - 2] == "nodes" and part in _NODE_KINDS) or (
        i >= 1 and loc[i - 1] == "bandit" and part in _BANDIT_ALGORITHMS
    )


def format_loc(prefix: str, loc: tuple[Any, ...]) -> str:
    """Turn a pydantic error location into a config path such as ``graph.nodes[2].arms``."""
    tail = error_field(
        [part for i, part in enumerate(loc) if not _is_tag(loc, i)], brackets=True, root=""
    )
    return prefix + tail if not tail or tail.startswith("[") else f"{prefix}.{tail}"


def parse_graph(
    data: Mapping[str, Any] | GraphSpec,
    *,
    prefix: str = "graph",
    base_dir: str | None = None,
    check_imports: bool = True,
    check_files: bool = True,
) -> GraphSpec:
    """Parse and fully validate a graph; the one entry point both front doors use.

    Args:
        data: the graph as a mapping (from YAML or the DSL) or an already parsed spec.
        prefix: config path of the graph, used in error messages.
        base_dir: folder relative model paths resolve against (after which, the cwd).
        check_imports: import every import path named in the graph.
        check_files: check that every model file exists.

    Returns:
        The spec, with relative model paths made absolute.

    Raises:
        GraphValidationError: listing every problem with its path.
    """
    if isinstance(data, GraphSpec):
        spec = data
    else:
        try:
            spec = GraphSpec.model_validate(dict(data))
        except ValidationError as exc:
            issues = [
                (format_loc(prefix, tuple(e["loc"])), error_message(e, echo=True))
                for e in exc.errors()
            ]
            raise GraphValidationError(issues) from None
    if check_files:
        spec = _absolute_paths(spec, base_dir)
    issues = check_graph(spec, prefix=prefix, check_imports=check_imports, check_files=check_files)
    if issues:
        raise GraphValidationError(issues)
    return spec


#: The folder holding the installed packages: the repository root in an editable install.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resolve_path(path: str, base_dir: str | None = None) -> str:
    """A relative path made absolute: the first of ``base_dir``, the cwd and the package root
    where it exists (the cwd when it exists nowhere, so the error names a sensible place)."""
    if os.path.isabs(path):
        return path
    for root in (base_dir, os.getcwd(), PACKAGE_ROOT):
        if root and os.path.exists(os.path.join(root, path)):
            return os.path.abspath(os.path.join(root, path))
    return os.path.abspath(path)


def _absolute_paths(spec: GraphSpec, base_dir: str | None) -> GraphSpec:
    nodes = []
    for node in spec.nodes:
        if isinstance(node, ModelNode):
            update = {
                key: resolve_path(getattr(node, key), base_dir)
                for key in ("model_path", "state_dict")
                if getattr(node, key)
            }
            node = node.model_copy(update=update)
        nodes.append(node)
    observe = observe_paths(spec.observe, base_dir, resolve_path)
    return spec.model_copy(update={"nodes": nodes, "observe": observe})


def check_graph(
    spec: GraphSpec, *, prefix: str = "graph", check_imports: bool = True, check_files: bool = True
) -> list[tuple[str, str]]:
    """The whole-graph rules; returns ``(path, message)`` for each problem found."""
    issues: list[tuple[str, str]] = []
    index: dict[str, int] = {}
    for i, node in enumerate(spec.nodes):
        where = f"{prefix}.nodes[{i}].name"
        if node.name == INGRESS_NAME:
            issues.append(
                (where, f"'{INGRESS_NAME}' is the graph's HTTP ingress; pick another name")
            )
        if node.name in index:
            issues.append(
                (where, f"duplicate node name {node.name!r} (also nodes[{index[node.name]}])")
            )
        else:
            index[node.name] = i

    def check_ref(path: str, ref: Any) -> None:
        for name in refs(ref):
            if name not in index:
                known = ", ".join(sorted(index)) or "none"
                issues.append((path, f"unknown node {name!r} (known nodes: {known})"))

    check_ref(f"{prefix}.entry", spec.entry)
    for i, node in enumerate(spec.nodes):
        where = f"{prefix}.nodes[{i}]"
        if isinstance(node, RouterNode):
            for j, arm in enumerate(node.arms):
                check_ref(f"{where}.arms[{j}].target", arm.target)
            if node.shadow is not None:
                check_ref(f"{where}.shadow.target", node.shadow.target)
        elif isinstance(node, EnsembleNode):
            for j, member in enumerate(node.members):
                check_ref(f"{where}.members[{j}]", member)
        if getattr(node, "fallback", None) is not None:
            check_ref(f"{where}.fallback", node.fallback)  # type: ignore[union-attr]
        issues.extend(_check_options(node, where))
        if check_imports:
            issues.extend(_check_imports(node, where))
        if check_imports and isinstance(node, ModelNode):
            issues.extend(_check_runtime_installed(node, where))
        if isinstance(node, ModelNode) and node.runtime == "vllm":
            issues.extend(_check_vllm(node, where, check_imports, check_files))
        elif check_files and isinstance(node, ModelNode):
            for key in ("model_path", "state_dict"):
                path = getattr(node, key)
                if path and not os.path.isfile(path):
                    issues.append((f"{where}.{key}", f"file not found: {path}"))
    issues.extend(_check_options(spec.ingress, f"{prefix}.ingress"))
    issues.extend(check_observe(spec, prefix, check_files))
    in_flight, ongoing = spec.limits.max_in_flight, spec.ingress.max_ongoing_requests
    if in_flight is not None and ongoing is not None and in_flight >= ongoing:
        issues.append(
            (
                f"{prefix}.limits.max_in_flight",
                f"must be below ingress.max_ongoing_requests ({ongoing}), got {in_flight}: Serve "
                "never sends a replica more, so the cap would never answer 503",
            )
        )
    if not issues:
        issues.extend(_check_cycles_and_reachability(spec, index, prefix))
    if not issues:
        issues.extend(_check_fusion(spec, prefix))
    return issues


def _check_fusion(spec: GraphSpec, prefix: str) -> list[tuple[str, str]]:
    """``fuse: true`` is refused on a node that cannot run inside its caller, never ignored."""
    placement = plan_placement(spec)
    issues = []
    for i, node in enumerate(spec.nodes):
        if node.fuse is not True:
            continue
        where = f"{prefix}.nodes[{i}].fuse"
        own = own_options(node)
        if own:
            issues.append(
                (
                    where,
                    f"node {node.name!r} sets {', '.join(own)} of its own, but a fused node "
                    "runs in its caller's replicas and shares their resources; drop fuse: true "
                    "or those settings",
                )
            )
        elif not placement.fused(node.name):
            issues.append(
                (where, f"node {node.name!r} cannot be fused: {placement.reasons[node.name]}")
            )
    return issues


def _check_options(opts: DeploymentOptions, where: str) -> list[tuple[str, str]]:
    if opts.autoscaling_config is None:
        return []
    from ray.serve.config import AutoscalingConfig

    try:
        AutoscalingConfig(**opts.autoscaling_config)
    except (ValidationError, TypeError, ValueError) as exc:
        errors: list[Any] = (
            list(exc.errors())
            if isinstance(exc, ValidationError)
            else [{"loc": (), "msg": str(exc), "type": "value_error"}]
        )
        return [
            (
                format_loc(f"{where}.autoscaling_config", tuple(e["loc"])),
                error_message(e, echo=True),
            )
            for e in errors
        ]
    return []


#: Runtimes whose engine is an optional package: (module, what it is, how to install it).
_RUNTIME_PACKAGES = {
    "onnx": (
        "onnxruntime",
        "ONNX Runtime",
        "pip install 'servegraph[onnx]' (CPU) or 'servegraph[gpu]' (CUDA)",
    ),
    "vllm": (
        "vllm",
        "the vllm package",
        "pip install -e '.[llm-cpu]' (CPU) or '.[llm]' (CUDA)",
    ),
}


def _check_runtime_installed(node: ModelNode, where: str) -> list[tuple[str, str]]:
    """A model node whose runtime needs a package that is not installed, named at build time."""
    if node.runtime not in _RUNTIME_PACKAGES:
        return []
    module, what, install = _RUNTIME_PACKAGES[node.runtime]
    if importlib.util.find_spec(module) is not None:
        return []
    message = f"runtime {node.runtime!r} needs {what}, which is not installed: {install}"
    return [(f"{where}.runtime", message)]


def _check_vllm(
    node: ModelNode, where: str, check_imports: bool, check_files: bool
) -> list[tuple[str, str]]:
    """A ``runtime: vllm`` node: its engine arguments known (when vLLM is installed; a missing
    vLLM is :func:`_check_runtime_installed`'s) and model_path a Hugging Face model directory."""
    issues: list[tuple[str, str]] = []
    extra_args = node.engine.extra_args if node.engine is not None else None
    if check_imports and extra_args and importlib.util.find_spec("vllm") is not None:
        for key in unknown_engine_args(extra_args):
            issues.append(
                (
                    f"{where}.engine.extra_args.{key}",
                    "not an argument of vLLM's AsyncEngineArgs; check its spelling",
                )
            )
    if check_files and node.model_path:
        path = node.model_path
        if not os.path.isdir(path):
            issues.append(
                (
                    f"{where}.model_path",
                    f"{path} is not a directory; runtime 'vllm' loads a Hugging Face model "
                    "directory (config.json, weights, tokenizer files)",
                )
            )
        elif not os.path.isfile(os.path.join(path, "config.json")):
            issues.append((f"{where}.model_path", f"{path} has no config.json"))
    return issues


def _check_imports(node: Any, where: str) -> list[tuple[str, str]]:
    keys: list[str] = []
    if isinstance(node, PreprocessNode):
        keys = ["function"]
    elif isinstance(node, ModelNode):
        keys = ["model_class", "postprocess"]
    elif isinstance(node, EnsembleNode):
        keys = ["postprocess"] + ([] if node.combiner in BUILTIN_COMBINERS else ["combiner"])
    issues = []
    for key in keys:
        value = getattr(node, key)
        if value is None:
            continue
        try:
            obj = resolve(value)
        except (ImportError, AttributeError, ValueError) as exc:
            issues.append((f"{where}.{key}", str(exc)))
            continue
        if not callable(obj):
            issues.append((f"{where}.{key}", f"{value!r} is not callable"))
    return issues


def _check_cycles_and_reachability(
    spec: GraphSpec, index: dict[str, int], prefix: str
) -> list[tuple[str, str]]:
    issues: list[tuple[str, str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join(path[path.index(name) :] + [name])
            issues.append((f"{prefix}.nodes[{index[name]}]", f"call cycle: {cycle}"))
            return
        state[name] = 1
        for child in spec.node(name).children():
            visit(child, path + [name])
        state[name] = 2

    for name in refs(spec.entry):
        visit(name, [])
    for name, i in index.items():
        if name not in state:
            issues.append(
                (
                    f"{prefix}.nodes[{i}]",
                    f"node {name!r} is not reachable from entry; "
                    "reference it from entry, an arm or a member, or remove it",
                )
            )
    return issues
