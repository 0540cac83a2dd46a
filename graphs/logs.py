"""servegraph's log lines with the request they belong to, in every process of a graph.

The ingress and every node call set a :class:`RequestScope` (a context variable: the request id,
graph, node and trace of the work under way) for as long as they run; :class:`RequestContext`
adds it to each log record, with the Serve deployment and replica of the process. Each replica
(the ingress's and every node deployment's) calls :func:`install_logging` once as it starts: the
``servegraph``, ``graphs``, ``nodes``, ``routing`` and ``autoscale`` loggers then write to the
replica's own Serve log file (``logs/serve/replica_<app>_<deployment>_<id>.log``, beside Serve's
access lines) and, like Serve, to stderr, one line per record:

- text (default): ``INFO 2026-12-05 13:01:02,345 ingress x9k2 req-1 -- message
  [servegraph node=split trace_id=4bf9…]``, Serve's own layout with what servegraph adds;
- JSON (``SERVEGRAPH_LOG_FORMAT=json``, or the deployment's ``logging_config: {encoding:
  JSON}``): one object per line with ``ts``, ``level``, ``logger``, ``message``,
  ``request_id``, ``graph``, ``node``, ``deployment``, ``replica``, ``trace_id``, ``span_id``
  (and ``exception`` with a traceback).

``SERVEGRAPH_LOG_LEVEL`` (default ``INFO``; ``DEBUG`` adds a line per request and per node call)
sets their level. Outside a Serve replica nothing is installed: use :class:`RequestContext`
with your own handlers.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from graphs.traceparent import TraceParent

__all__ = [
    "FORWARDED_ENV",
    "LOGGERS",
    "JsonFormatter",
    "ProcessInfo",
    "RequestContext",
    "RequestScope",
    "TextFormatter",
    "current_scope",
    "enter_scope",
    "exit_scope",
    "forwarded_env",
    "install_logging",
    "process_info",
    "request_scope",
]

#: The loggers servegraph's packages log through (module loggers are named after the module).
LOGGERS = ("servegraph", "graphs", "nodes", "routing", "autoscale")
#: Variables of the building process that the replicas get too (see :func:`forwarded_env`).
FORWARDED_ENV = (
    "SERVEGRAPH_LOG_FORMAT",
    "SERVEGRAPH_LOG_LEVEL",
    "SERVEGRAPH_OTEL",
    "SERVEGRAPH_OTEL_FILE",
)
#: The fields a record gets from :class:`RequestContext`, in the order the JSON lines give them.
FIELDS = ("request_id", "graph", "node", "deployment", "replica", "trace_id", "span_id")


@dataclass(frozen=True)
class RequestScope:
    """The request the current code works for.

    Attributes:
        request_id: the request's id (its ``X-Request-Id``).
        graph: the graph's name.
        node: the node being called (None at the ingress, outside any node).
        trace: this work's span (its trace id and span id).
    """

    request_id: str | None
    graph: str | None = None
    node: str | None = None
    trace: TraceParent | None = None


_SCOPE: ContextVar[RequestScope | None] = ContextVar("servegraph_request_scope", default=None)


def current_scope() -> RequestScope | None:
    """The request in scope here, if any."""
    return _SCOPE.get()


@contextlib.contextmanager
def request_scope(scope: RequestScope) -> Iterator[RequestScope]:
    """Make ``scope`` the request in scope for the block (and the tasks it starts)."""
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def enter_scope(scope: RequestScope) -> Token[RequestScope | None]:
    """Make ``scope`` the request in scope until :func:`exit_scope` with the token returned
    (:func:`request_scope` as two calls, for the hot path)."""
    return _SCOPE.set(scope)


def exit_scope(token: Token[RequestScope | None]) -> None:
    """End the scope :func:`enter_scope` began."""
    _SCOPE.reset(token)


@dataclass(frozen=True)
class ProcessInfo:
    """Where this process serves: its Serve application, deployment and replica."""

    app: str | None = None
    deployment: str | None = None
    replica: str | None = None
    json_encoding: bool = False


_NOWHERE = ProcessInfo()
_process: ProcessInfo | None = None


def process_info() -> ProcessInfo:
    """This process's Serve replica (all None outside one); looked up once found."""
    global _process
    if _process is not None:
        return _process
    if "ray.serve" not in sys.modules:  # never imports Ray for a log line
        return _NOWHERE
    from ray import serve

    try:
        context: Any = serve.get_replica_context()
    except Exception:  # not a replica (Serve sets the context before a replica's __init__)
        _process = _NOWHERE
        return _NOWHERE
    config = getattr(context, "_deployment_config", None)
    logging_config = getattr(config, "logging_config", None) or {}
    encoding = (
        logging_config.get("encoding")
        if isinstance(logging_config, dict)
        else getattr(logging_config, "encoding", None)
    )
    _process = ProcessInfo(
        context.app_name,
        context.deployment,
        context.replica_tag,
        str(getattr(encoding, "value", encoding)).upper() == "JSON",
    )
    return _process


def _serve_request_id() -> str | None:
    """The request id Serve has in scope (handle calls carry it from the ingress)."""
    context = sys.modules.get("ray.serve.context")
    if context is None:
        return None
    try:
        return context._get_serve_request_context().request_id or None
    except Exception:
        return None


class RequestContext(logging.Filter):
    """Adds ``request_id``, ``graph``, ``node``, ``deployment``, ``replica``, ``trace_id`` and
    ``span_id`` to each record (None where unknown), from the :class:`RequestScope` in scope,
    else Serve's request context, and the process's Serve replica. Filters nothing out."""

    def filter(self, record: logging.LogRecord) -> bool:
        scope = _SCOPE.get()
        where = process_info()
        trace = scope.trace if scope is not None else None
        values = {
            "request_id": scope.request_id if scope is not None else _serve_request_id(),
            "graph": (scope.graph if scope is not None else None) or where.app,
            "node": scope.node if scope is not None else None,
            "deployment": where.deployment,
            "replica": where.replica,
            "trace_id": trace.trace_id if trace is not None else None,
            "span_id": trace.span_id if trace is not None else None,
        }
        for key, value in values.items():
            if getattr(record, key, None) is None:  # what the caller passed in extra= wins
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
    the :class:`RequestContext` fields and, with an exception, ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            line[key] = getattr(record, key, None)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """Serve's replica log layout (``LEVEL time deployment replica request_id -- message``)
    followed by the logger and, when known, the node and trace id."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(asctime)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        where = " ".join(
            str(getattr(record, key, None) or "-") for key in ("deployment", "replica")
        )
        request_id = getattr(record, "request_id", None)
        tags = [record.name] + [
            f"{key}={getattr(record, key)}"
            for key in ("node", "trace_id")
            if getattr(record, key, None)
        ]
        head = f"{record.levelname} {record.asctime} {where}"
        if request_id:
            head += f" {request_id}"
        return f"{head} -- {record.message} [{' '.join(tags)}]"


_installed = False


def _serve_log_file() -> tuple[str | None, bool]:
    """The file Serve's replica logger writes to, and whether it also writes to stderr."""
    path, to_stderr = None, False
    for handler in logging.getLogger("ray.serve").handlers:
        target = getattr(handler, "target", None)  # a MemoryHandler in front of the file
        if isinstance(target, logging.FileHandler):
            path = target.baseFilename
        elif isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            to_stderr = True
    return path, to_stderr


def install_logging(environ: dict[str, str] | None = None) -> bool:
    """Set up servegraph's loggers in this Serve replica (see the module's docstring); once per
    process, later calls change nothing. Whether this call installed them (False outside a
    Serve replica, where logging stays as the process has it)."""
    global _installed
    if _installed:
        return False
    env = os.environ if environ is None else environ
    where = process_info()
    if where.deployment is None:
        return False
    path, to_stderr = _serve_log_file()
    handlers: list[logging.Handler] = []
    if path is not None:
        handlers.append(logging.handlers.WatchedFileHandler(path))  # reopens after rotation
    if to_stderr or path is None:
        handlers.append(logging.StreamHandler(sys.__stderr__))
    use_json = env.get("SERVEGRAPH_LOG_FORMAT", "").lower() == "json" or (
        where.json_encoding and env.get("SERVEGRAPH_LOG_FORMAT", "").lower() != "text"
    )
    formatter = JsonFormatter() if use_json else TextFormatter()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RequestContext())
    level = env.get("SERVEGRAPH_LOG_LEVEL", "INFO").upper()
    if not isinstance(logging.getLevelName(level), int):
        level = "INFO"
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = False  # else also to the root logger (Ray's stderr, unformatted)
        for handler in handlers:
            logger.addHandler(handler)
    _installed = True
    return True


def forwarded_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The logging and tracing settings of this process that a graph's replicas get as well:
    the ``SERVEGRAPH_LOG_*`` and ``SERVEGRAPH_OTEL*`` variables and OpenTelemetry's standard
    ``OTEL_*`` ones, where set."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k in FORWARDED_ENV or k.startswith("OTEL_")}
