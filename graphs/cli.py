"""``servegraph``: the command line for graph files and served graphs.

``servegraph validate FILE`` checks a graph file the way a deploy would and prints every problem
with its config path; ``servegraph build FILE -o serve.yaml`` writes the Serve config that
``serve run`` / ``serve deploy`` take; ``servegraph schema`` prints the graph JSON schema (also
shipped as ``graphs/graph.schema.json`` for editors). Against served graphs
(:mod:`graphs.cli_ops`, :mod:`graphs.cli_bench`): ``status`` (applications, nodes, where each
runs, replicas), ``experiments GRAPH`` (per arm figures with 95 % intervals), ``control GRAPH
ROUTER ACTION`` (with the control token) and ``bench URL`` (a short load, with a progress bar).
``--json`` makes every answer one JSON document, for scripts; a failure is one line on standard
error.

Exit codes:
    0: success.
    1: the graph is invalid or its file unreadable (validate, build); some requests failed
       (bench).
    2: a usage error (unknown command or option, bad argument).
    3: the server cannot be reached (connection refused, timeout).
    4: the server answered with an error (HTTP 4xx/5xx: unknown graph or router, wrong token,
       refused action).
    5: no control token was found (control).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import yaml

from graphs.builder import load_graph
from graphs.cli_bench import bench, bench_text, default_body
from graphs.cli_ops import CliError, add_commands, run_command
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


def _served(args: argparse.Namespace) -> int:
    """``status``, ``experiments``, ``control`` and ``bench``: one line and an exit code on
    failure (:data:`graphs.cli_ops.EXIT_CODES`)."""
    try:
        if args.command == "bench":
            body = json.loads(args.data) if args.data else default_body(args.url, args.timeout)
            report = bench(
                args.url,
                body,
                None if args.duration and args.requests is None else (args.requests or 200),
                args.concurrency,
                args.duration,
                args.timeout,
                None if args.quiet else sys.stderr,
            )
            _emit(args, report, bench_text(report))
            return 1 if report["errors"] else 0
        document, text = run_command(args)
    except CliError as exc:
        print(f"servegraph {args.command}: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": str(exc), "exit_code": exc.code}))
        return exc.code
    except ValueError as exc:  # --data that is not JSON
        print(f"servegraph {args.command}: {exc}", file=sys.stderr)
        return 2
    _emit(args, document, text)
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
    add_commands(commands, common)
    load = commands.add_parser(
        "bench", parents=[common], help="a short load: throughput and latency, progress bar"
    )
    load.add_argument("url", help="the graph's /predict (or its prefix, e.g. .../digits)")
    load.add_argument("-n", "--requests", type=int, help="requests to send (200)")
    load.add_argument("-c", "--concurrency", type=int, default=8, help="connections (8)")
    load.add_argument("-d", "--duration", type=float, help="seconds to run instead of -n")
    load.add_argument("--data", help="the JSON body (default: zeros shaped as the inputs)")
    load.add_argument("--timeout", type=float, default=30.0, help="seconds per request (30)")
    load.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    handlers = {"validate": _validate, "build": _build, "schema": _schema}
    return handlers.get(args.command, _served)(args)


if __name__ == "__main__":
    sys.exit(main())
