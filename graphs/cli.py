"""``servegraph``: the command line for graph files.

``servegraph validate FILE`` checks a graph file the way a deploy would and prints every problem
with its config path; ``servegraph build FILE -o serve.yaml`` writes the Serve config that
``serve run`` / ``serve deploy`` take; ``servegraph schema`` prints the graph JSON schema (also
shipped as ``graphs/graph.schema.json`` for editors). ``--json`` makes every answer one JSON
document, for scripts.

Exit codes: 0 success; 1 the graph is invalid (or its file unreadable); 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import yaml

from graphs.builder import load_graph
from graphs.placement import plan_placement
from graphs.spec import GraphSpec
from nodes.errors import GraphValidationError

__all__ = ["SCHEMA_PATH", "graph_schema", "main", "serve_config"]

#: The graph JSON schema shipped with the package (``servegraph schema`` prints it).
SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "graph.schema.json")


def graph_schema() -> dict[str, Any]:
    """The JSON schema of a graph file (``GraphSpec``, as validation reads it)."""
    schema = GraphSpec.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "servegraph graph"
    return schema


def serve_config(path: str, spec: GraphSpec) -> dict[str, Any]:
    """A Serve config serving the graph file ``path`` at ``/<graph>`` on 127.0.0.1:8000."""
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": 8000},
        "applications": [
            {
                "name": spec.name,
                "route_prefix": f"/{spec.name}",
                "import_path": "graphs.builder:build_app",
                "args": {"graph": path},
            }
        ],
    }


def _problems(exc: GraphValidationError) -> list[dict[str, str]]:
    return [{"path": path, "message": message} for path, message in exc.issues]


def _emit(args: argparse.Namespace, document: Any, text: str) -> None:
    print(json.dumps(document, indent=2) if args.json else text)


def _load(args: argparse.Namespace, outcome: str) -> GraphSpec | None:
    """The graph of ``args.file``; None, with every problem reported, when it is invalid."""
    try:
        return load_graph(args.file)
    except GraphValidationError as exc:
        problems = _problems(exc)
        lines = "\n".join(f"{p['path']}: {p['message']}" for p in problems)
        _emit(args, {outcome: False, "problems": problems}, lines)
        return None


def placement_view(spec: GraphSpec) -> tuple[dict[str, Any], str]:
    """Where each node runs: as JSON (node -> deployment and why) and as indented lines."""
    placement = plan_placement(spec)
    document = {
        node: {"deployment": host, "why": placement.reasons[node]}
        for node, host in placement.host.items()
    }
    return document, "\n".join(f"  {line}" for line in placement.describe())


def _validate(args: argparse.Namespace) -> int:
    spec = _load(args, "valid")
    if spec is None:
        return 1
    nodes = len(spec.nodes)
    placement, lines = placement_view(spec)
    _emit(
        args,
        {"valid": True, "graph": spec.name, "nodes": nodes, "placement": placement},
        f"{args.file}: graph {spec.name!r} is valid ({nodes} nodes)\n{lines}",
    )
    return 0


def _build(args: argparse.Namespace) -> int:
    spec = _load(args, "built")
    if spec is None:
        return 1
    config = serve_config(args.file, spec)
    placement, lines = placement_view(spec)
    if args.output in (None, "-"):
        if args.json:
            _emit(args, {"built": True, "config": config, "placement": placement}, "")
        else:
            sys.stdout.write(yaml.safe_dump(config, sort_keys=False))
            print(f"where each node runs:\n{lines}", file=sys.stderr)
        return 0
    with open(args.output, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    _emit(
        args,
        {"built": True, "output": args.output, "graph": spec.name, "placement": placement},
        f"wrote {args.output}: serve run {args.output}\nwhere each node runs:\n{lines}",
    )
    return 0


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(graph_schema(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``servegraph`` command line; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="servegraph", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="answer with one JSON document")
    common = argparse.ArgumentParser(add_help=False)  # --json also after the command
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "validate", parents=[common], help="check a graph file; every problem, with its path"
    )
    check.add_argument("file")
    build = commands.add_parser(
        "build", parents=[common], help="write the Serve config for a graph file"
    )
    build.add_argument("file")
    build.add_argument("-o", "--output", help="output file (default: standard output)")
    commands.add_parser("schema", parents=[common], help="print the graph JSON schema")
    args = parser.parse_args(argv)
    handlers = {"validate": _validate, "build": _build, "schema": _schema}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
