"""``servegraph status | experiments | control``: the daily work against served graphs, over HTTP.

``status`` reads Serve's REST API on the Ray dashboard (``--address``, with Ray's token from
``$RAY_AUTH_TOKEN`` or its token file when there is one) and each graph's ``/graph``;
``experiments`` and ``control`` talk to a graph at ``--url``. Failures are one line on standard
error and an exit code (:data:`EXIT_CODES`); ``--json`` also prints them as
``{"error": ..., "exit_code": ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from graphs.cluster import AUTH_TOKEN_ENV, DASHBOARD_HOST, token_path
from graphs.security import CONTROL_TOKEN_ENV, control_token_path

__all__ = [
    "EXIT_CODES",
    "CliError",
    "add_commands",
    "experiments_table",
    "fetch_json",
    "read_control_token",
]

#: Exit codes of every ``servegraph`` command.
EXIT_CODES = {
    0: "success",
    1: "the graph is invalid or its file unreadable (validate, build); some requests failed "
    "(bench)",
    2: "usage error (unknown command or option, bad argument)",
    3: "cannot reach the server (connection refused, timeout, DNS)",
    4: "the server answered with an error (HTTP 4xx/5xx: unknown graph or router, wrong token, "
    "refused action)",
    5: "no control token found (control)",
}
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_ADDRESS = f"http://{DASHBOARD_HOST}:8265"


class CliError(Exception):
    """A failure the command line reports as one line, with its exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def fetch_json(
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Any:
    """GET ``url`` (POST ``body`` as JSON when given) and parse the JSON answer.

    Raises:
        CliError: unreachable (exit 3), or an HTTP error answer (exit 4, with its detail).
    """
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise CliError(f"{url}: HTTP {exc.code}: {_detail(exc.read())}", 4) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"cannot reach {url}: {reason}", 3) from None


def _detail(raw: bytes) -> str:
    """The readable part of an error answer: ``detail`` / ``error`` of a JSON body."""
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace").strip()[:200] or "no detail"
    if isinstance(body, dict):
        detail = body.get("detail", body.get("error", body))
        if isinstance(detail, list):  # FastAPI's 422 list
            where = (".".join(map(str, d.get("loc", []))) for d in detail)
            return "; ".join(f"{w}: {d.get('msg')}" for w, d in zip(where, detail))
        return str(detail)
    return str(body)


def read_control_token(path: str | None = None) -> str:
    """The control token: ``--token-file``, else ``$SERVEGRAPH_CONTROL_TOKEN``, else the state
    folder's ``control.token`` (read only: the command line never creates one).

    Raises:
        CliError: none found (exit 5).
    """
    if path is None and os.environ.get(CONTROL_TOKEN_ENV, "").strip():
        return os.environ[CONTROL_TOKEN_ENV].strip()
    where = path or control_token_path()
    try:
        with open(where, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise CliError(
            f"no control token: set ${CONTROL_TOKEN_ENV} or pass --token-file "
            f"({where}: {exc.strerror})",
            5,
        ) from None
    if not token:
        raise CliError(f"no control token: {where} is empty", 5)
    return token


def _ray_auth() -> dict[str, str]:
    token = os.environ.get(AUTH_TOKEN_ENV, "").strip()
    if not token:
        try:
            with open(token_path(), encoding="utf-8") as f:
                token = f.read().strip()
        except OSError:
            return {}
    return {"Authorization": f"Bearer {token}"} if token else {}


def _rows(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header, *rows]
    )


def _num(x: Any, digits: int = 1) -> str:
    return "-" if x is None else f"{float(x):.{digits}f}"


def status(address: str, url: str, timeout: float = 10.0) -> dict[str, Any]:
    """Serve's applications and deployments (replicas by state), and each graph's nodes with
    the deployment each runs in."""
    serve = fetch_json(f"{address.rstrip('/')}/api/serve/applications/", None, _ray_auth(), timeout)
    apps = []
    for name, app in sorted((serve.get("applications") or {}).items()):
        deployments = {}
        for dname, d in sorted((app.get("deployments") or {}).items()):
            replicas = d.get("replicas") or []
            states: dict[str, int] = {}
            for r in replicas:
                states[r.get("state", "?")] = states.get(r.get("state", "?"), 0) + 1
            deployments[dname] = {
                "status": d.get("status"),
                "running": states.get("RUNNING", 0),
                "replica_states": states,
                "nodes_of_replicas": sorted({r.get("node_ip") or "?" for r in replicas}),
            }
        entry: dict[str, Any] = {
            "name": name,
            "status": app.get("status"),
            "route_prefix": app.get("route_prefix"),
            "deployments": deployments,
        }
        if app.get("route_prefix") and app.get("status") == "RUNNING":
            try:
                prefix = app["route_prefix"]
                graph = fetch_json(f"{url.rstrip('/')}{prefix}/graph", None, {}, timeout)
                entry["nodes"] = [
                    {"name": n["name"], "kind": n["kind"], "deployment": n.get("deployment")}
                    for n in graph.get("nodes", [])
                ]
            except CliError as exc:  # not a servegraph app, or it does not answer
                entry["graph_error"] = str(exc)
        apps.append(entry)
    return {"address": address, "applications": apps}


def status_text(report: Mapping[str, Any]) -> str:
    """``status`` as readable lines: per application its status, then one row per node."""
    out = []
    for app in report["applications"]:
        out.append(f"{app['name']}  {app['status']}  {app.get('route_prefix') or '-'}")
        deployments = app["deployments"]
        rows = []
        for node in app.get("nodes", []):
            dep = deployments.get(node["deployment"], {})
            where = "own deployment" if node["deployment"] == node["name"] else node["deployment"]
            rows.append(
                [
                    node["name"],
                    node["kind"],
                    where,
                    str(dep.get("running", "-")),
                    ",".join(dep.get("nodes_of_replicas", [])) or "-",
                ]
            )
        for dname, dep in deployments.items():
            if not any(n["deployment"] == dname for n in app.get("nodes", [])):
                rows.append([dname, "deployment", dname, str(dep["running"]), "-"])
        header = ["node", "kind", "runs in", "replicas", "host"]
        out.extend("  " + line for line in _rows(header, rows).splitlines())
        if app.get("graph_error"):
            out.append(f"  (no graph view: {app['graph_error']})")
    return "\n".join(out) or "no applications"


def experiments_table(report: Mapping[str, Any]) -> str:
    """``GET /experiments`` as one table per router: figures and reward CIs per arm, and each
    arm's difference against the control arm with its 95 % interval and p-value."""
    out = []
    for router, r in report.get("routers", {}).items():
        out.append(f"router {router} ({r.get('policy')}), control arm: {r.get('control')}")
        rows = []
        for arm, a in (r.get("arms") or {}).items():
            reward = a.get("reward") or {}
            ci = reward.get("ci95")
            vs = a.get("vs_control")
            rows.append(
                [
                    arm,
                    str(a.get("requests", 0)),
                    str(a.get("errors", 0)),
                    _num(a.get("p50_ms")),
                    _num(a.get("p95_ms")),
                    str(reward.get("count", 0)),
                    _num(reward.get("mean"), 3) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""),
                    "control"
                    if arm == r.get("control")
                    else "-"
                    if not vs
                    else f"{vs['difference']:+.3f}"
                    + (f" [{vs['ci95'][0]:+.3f}, {vs['ci95'][1]:+.3f}]" if vs.get("ci95") else "")
                    + (f" p={vs['p_value']:.3g}" if vs.get("p_value") is not None else "")
                    + (" *" if vs.get("significant") else ""),
                ]
            )
        header = ["arm", "requests", "errors", "p50 ms", "p95 ms", "rewards", "reward [95% CI]"]
        out.extend("  " + line for line in _rows([*header, "vs control"], rows).splitlines())
    if any(
        (a.get("vs_control") or {}).get("significant")
        for r in report.get("routers", {}).values()
        for a in (r.get("arms") or {}).values()
    ):
        out.append("* significant at 5 %")
    return "\n".join(out) or "no routers"


def control_body(args: argparse.Namespace) -> dict[str, Any]:
    """The action's JSON body from ``--weights``, ``--to``, ``--reason`` and ``--body``."""
    body: dict[str, Any] = {}
    if args.body:
        try:
            body = json.loads(args.body)
        except ValueError as exc:
            raise CliError(f"--body is not JSON: {exc}", 2) from None
        if not isinstance(body, dict):
            raise CliError("--body must be a JSON object", 2)
    if args.weights is not None:
        body["weights"] = args.weights
    if args.to is not None:
        body["to"] = args.to
    if args.reason is not None:
        body["reason"] = args.reason
    return body


def _graph_url(args: argparse.Namespace) -> str:
    return f"{args.url.rstrip('/')}/{args.graph.strip('/')}"


def run_command(args: argparse.Namespace) -> tuple[Any, str]:
    """Run ``status``, ``experiments`` or ``control``: (JSON answer, its readable text)."""
    if args.command == "status":
        report = status(args.address, args.url, args.timeout)
        return report, status_text(report)
    if args.command == "experiments":
        report = fetch_json(f"{_graph_url(args)}/experiments", None, {}, args.timeout)
        return report, experiments_table(report)
    body = control_body(args)
    token = read_control_token(args.token_file)
    url = f"{_graph_url(args)}/routers/{args.router}/{args.action}"
    answer = fetch_json(url, body, {"Authorization": f"Bearer {token}"}, args.timeout)
    weights = answer.get("weights")
    extra = f"; weights now {weights}" if weights is not None else ""
    return answer, f"{args.action} on router {args.router} of {args.graph}: done{extra}"


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``status``, ``experiments`` and ``control`` to the ``servegraph`` parser."""
    http = argparse.ArgumentParser(add_help=False)
    http.add_argument("--url", default=DEFAULT_URL, help=f"Serve's HTTP address ({DEFAULT_URL})")
    http.add_argument("--timeout", type=float, default=30.0, help="seconds per request (30)")
    st = commands.add_parser(
        "status", parents=[common, http], help="applications, nodes, where each runs, replicas"
    )
    st.add_argument(
        "--address", default=DEFAULT_ADDRESS, help=f"Ray dashboard address ({DEFAULT_ADDRESS})"
    )
    ex = commands.add_parser(
        "experiments", parents=[common, http], help="per router and arm: figures and 95 %% CIs"
    )
    ex.add_argument("graph", help="the graph's name (its route prefix)")
    ct = commands.add_parser(
        "control", parents=[common, http], help="an operator action on a router (control token)"
    )
    ct.add_argument("graph", help="the graph's name (its route prefix)")
    ct.add_argument("router", help="the router node")
    ct.add_argument(
        "action", choices=["weights", "pause", "resume", "promote", "rollback", "switch", "reset"]
    )
    ct.add_argument("--weights", type=float, nargs="+", help="weights: the new split, per arm")
    ct.add_argument("--to", help="switch: the arm to switch to")
    ct.add_argument("--reason", help="why (kept in the router's history)")
    ct.add_argument("--body", help="the action's JSON body, as is")
    ct.add_argument(
        "--token-file",
        help=f"file holding the control token (default: ${CONTROL_TOKEN_ENV}, else "
        "control.token in the state folder)",
    )
