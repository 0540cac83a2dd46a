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
from graphs.errors import GraphValidationError
from graphs.spec import GraphSpec
from graphs.validate import parse_graph, resolve_path


def load_graph(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    base_dir: str | None = None,
    prefix: str = "graph",
) -> GraphSpec:
    """Parse and validate a graph from a YAML file path or a mapping."""
    if isinstance(source, Mapping):
        return parse_graph(source, prefix=prefix, base_dir=base_dir)
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
    return parse_graph(data, prefix=f"{path}: graph", base_dir=base_dir or os.path.dirname(path))


def build_app(args: Mapping[str, Any]) -> Application:
    """Serve application builder: ``args = {"graph": <inline graph or YAML path>, "base_dir"?}``."""
    if not isinstance(args, Mapping) or "graph" not in args:
        raise GraphValidationError(
            [("args.graph", "required: the graph inline, or a path to a graph YAML file")]
        )
    unknown = sorted(set(args) - {"graph", "base_dir"})
    if unknown:
        raise GraphValidationError(
            [(f"args.{unknown[0]}", "unknown key (allowed: graph, base_dir)")]
        )
    graph = args["graph"]
    if not isinstance(graph, (str, Mapping)):
        raise GraphValidationError([("args.graph", f"a mapping or a file path, got {graph!r}")])
    spec = load_graph(graph, base_dir=args.get("base_dir"), prefix="args.graph")
    return compile_graph(spec, validate=False)
