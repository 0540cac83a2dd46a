"""The application builder Serve configs point at: ``import_path: graphs.builder:build_app``.

``args.graph`` is the graph inline, or a path to a graph YAML file. Relative paths
resolve against the cwd, then the folder holding the installed packages (the repository root in an
editable install); relative model paths first against the graph file's folder (or ``base_dir``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml
from ray.serve.deployment import Application

from graphs.compiler import compile_graph
from graphs.placement import FUSION_MODES
from graphs.spec import GraphSpec
from graphs.validate import parse_graph, resolve_path
from nodes.errors import GraphValidationError


def _read(
    source: str | os.PathLike[str] | Mapping[str, Any], base_dir: str | None, prefix: str
) -> tuple[dict[str, Any], str | None, str]:
    """The graph mapping, the folder its relative paths resolve against, and its error prefix."""
    if isinstance(source, Mapping):
        return dict(source), base_dir, prefix
    path = resolve_path(os.fspath(source))
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise GraphValidationError([(prefix, f"cannot read graph file {path!r}: {exc}")]) from None
    except yaml.YAMLError as exc:
        raise GraphValidationError([(prefix, f"invalid YAML in {path!r}: {exc}")]) from None
    if not isinstance(data, Mapping):
        raise GraphValidationError([(prefix, f"{path!r} must hold a mapping (the graph)")])
    return dict(data), base_dir or os.path.dirname(path), f"{path}: graph"


def load_graph(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    base_dir: str | None = None,
    prefix: str = "graph",
) -> GraphSpec:
    """Parse and validate a graph from a YAML file path or a mapping."""
    data, base, where = _read(source, base_dir, prefix)
    return parse_graph(data, prefix=where, base_dir=base)


def _with_autoscaling(data: dict[str, Any], overrides: Any) -> dict[str, Any]:
    """``args.autoscaling`` (node name -> settings) applied to the graph's nodes."""
    if not isinstance(overrides, Mapping):
        raise GraphValidationError(
            [("args.autoscaling", f"a mapping of node name to settings, got {overrides!r}")]
        )
    nodes = [dict(n) if isinstance(n, Mapping) else n for n in data.get("nodes") or []]
    names = {n.get("name"): n for n in nodes if isinstance(n, dict)}
    for name, settings in overrides.items():
        if name not in names:
            known = ", ".join(sorted(str(n) for n in names))
            raise GraphValidationError(
                [(f"args.autoscaling.{name}", f"unknown node (known nodes: {known})")]
            )
        names[name]["autoscaling"] = settings
        names[name].pop("num_replicas", None)
    return {**data, "nodes": nodes}


def build_app(args: Mapping[str, Any]) -> Application:
    """Serve application builder.

    ``args``: ``graph`` (the graph inline, or a path to a graph YAML file), optional
    ``base_dir`` for relative model paths, optional ``autoscaling``: settings per node name
    that put those nodes under servegraph's autoscaling policy (see ``ScalingSettings``), and
    optional ``fusion`` (none, cheap or all), which replaces the graph's own.
    """
    if not isinstance(args, Mapping) or "graph" not in args:
        raise GraphValidationError(
            [("args.graph", "required: the graph inline, or a path to a graph YAML file")]
        )
    unknown = sorted(set(args) - {"graph", "base_dir", "autoscaling", "fusion"})
    if unknown:
        raise GraphValidationError(
            [(f"args.{unknown[0]}", "unknown key (allowed: graph, base_dir, autoscaling, fusion)")]
        )
    graph = args["graph"]
    if not isinstance(graph, (str, Mapping)):
        raise GraphValidationError([("args.graph", f"a mapping or a file path, got {graph!r}")])
    data, base, where = _read(graph, args.get("base_dir"), "args.graph")
    if "autoscaling" in args:
        data = _with_autoscaling(data, args["autoscaling"])
    if "fusion" in args:
        data = {**data, "fusion": fusion_arg(args["fusion"])}
    return compile_graph(parse_graph(data, prefix=where, base_dir=base), validate=False)


def fusion_arg(value: Any) -> str:
    """``args.fusion`` checked: none, cheap or all."""
    if value not in FUSION_MODES:
        raise GraphValidationError(
            [("args.fusion", f"one of {', '.join(FUSION_MODES)}, got {value!r}")]
        )
    return str(value)
