"""servegraph's log records: the request in scope on every line, text and JSON layouts."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from graphs.logs import (
    JsonFormatter,
    RequestContext,
    RequestScope,
    TextFormatter,
    current_scope,
    forwarded_env,
    install_logging,
    request_scope,
)
from graphs.traceparent import TraceParent
from tests.support import ROOT

TRACE = TraceParent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
SCOPE = RequestScope("req-7", "digits", "split", TRACE)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A logger of servegraph's hierarchy writing to a string through the filter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestContext())
    logger = logging.getLogger("routing.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, out, handler
    logger.removeHandler(handler)


def test_records_carry_the_request_in_scope(captured: tuple) -> None:
    logger, out, handler = captured
    handler.setFormatter(JsonFormatter())
    with request_scope(SCOPE):
        logger.warning("arm %s failed", "mlp")
    logger.info("no request")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "arm mlp failed" and first["level"] == "WARNING"
    assert first["logger"] == "routing.test_logs"
    assert (first["request_id"], first["graph"], first["node"]) == ("req-7", "digits", "split")
    assert (first["trace_id"], first["span_id"]) == (TRACE.trace_id, TRACE.span_id)
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert set(first) == {
        "ts",
        "level",
        "logger",
        "message",
        "request_id",
        "graph",
        "node",
        "deployment",
        "replica",
        "trace_id",
        "span_id",
    }
    # Out of any request (and outside a Serve replica): the fields are there, empty.
    assert second["message"] == "no request" and second["request_id"] is None
    assert second["trace_id"] is None and second["deployment"] is None


def test_json_lines_hold_the_exception_and_what_extra_passed(captured: tuple) -> None:
    logger, out, handler = captured
    handler.setFormatter(JsonFormatter())
    with request_scope(SCOPE):
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed", extra={"node": "mlp"})
    line = json.loads(out.getvalue())
    assert line["node"] == "mlp" and line["request_id"] == "req-7"  # extra= wins
    assert "ValueError: boom" in line["exception"] and "Traceback" in line["exception"]


def test_text_lines_follow_serve_layout_with_request_node_and_trace(captured: tuple) -> None:
    logger, out, handler = captured
    handler.setFormatter(TextFormatter())
    with request_scope(SCOPE):
        logger.error("node failed")
    logger.info("idle")
    with_request, idle = out.getvalue().splitlines()
    assert with_request.startswith("ERROR ")
    assert " - - req-7 -- node failed [routing.test_logs node=split trace_id=" in with_request
    assert with_request.endswith(f"trace_id={TRACE.trace_id}]")
    assert idle.startswith("INFO ") and idle.endswith(" - - -- idle [routing.test_logs]")


def test_the_scope_ends_with_its_block_and_follows_tasks() -> None:
    assert current_scope() is None

    async def main() -> tuple[RequestScope | None, RequestScope | None]:
        with request_scope(SCOPE):
            inner = await asyncio.create_task(_scope_now())
        return inner, current_scope()

    inner, after = asyncio.run(main())
    assert inner == SCOPE and after is None
    with pytest.raises(RuntimeError), request_scope(SCOPE):
        raise RuntimeError("the scope ends on errors too")
    assert current_scope() is None


async def _scope_now() -> RequestScope | None:
    return current_scope()


def test_nothing_is_installed_outside_a_serve_replica() -> None:
    before = {n: list(logging.getLogger(n).handlers) for n in ("servegraph", "nodes")}
    assert install_logging({"SERVEGRAPH_LOG_FORMAT": "json"}) is False
    assert {n: list(logging.getLogger(n).handlers) for n in before} == before


def test_replicas_get_the_logging_and_tracing_settings() -> None:
    env = {
        "SERVEGRAPH_LOG_FORMAT": "json",
        "SERVEGRAPH_LOG_LEVEL": "DEBUG",
        "SERVEGRAPH_OTEL_FILE": "/tmp/spans.jsonl",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_SERVICE_NAME": "shop",
        "HOME": "/root",
        "SERVEGRAPH_CONTROL_TOKEN": "secret",
    }
    forwarded = forwarded_env(env)
    assert "HOME" not in forwarded and "SERVEGRAPH_CONTROL_TOKEN" not in forwarded
    assert forwarded == {
        k: v for k, v in env.items() if k not in ("HOME", "SERVEGRAPH_CONTROL_TOKEN")
    }


#: A Serve replica's logging as Ray Serve sets it up (its replica context, and the "ray.serve"
#: logger writing through a MemoryHandler to the replica's file), then servegraph's install.
_REPLICA = """
import logging, logging.handlers, sys
from ray.serve import context
from ray.serve._private.common import DeploymentID, ReplicaID
from ray.serve._private.config import DeploymentConfig
path, encoding, fmt, to_stderr = sys.argv[1:]
target = logging.handlers.RotatingFileHandler(path)
if to_stderr != "1":  # Serve's stderr handler stays unless RAY_SERVE_LOG_TO_STDERR=0
    logging.getLogger("ray.serve").handlers.clear()
logging.getLogger("ray.serve").addHandler(logging.handlers.MemoryHandler(1, target=target))
context._set_internal_replica_context(
    replica_id=ReplicaID("r1", DeploymentID("echo", "shop")),
    servable_object=None,
    _deployment_config=DeploymentConfig(logging_config={"encoding": encoding}),
    rank=None,
    world_size=1,
)
from graphs.logs import RequestScope, install_logging, request_scope
env = {"SERVEGRAPH_LOG_FORMAT": fmt} if fmt else {}
assert install_logging(env) and not install_logging(env)
with request_scope(RequestScope("req-9", None, "echo")):
    logging.getLogger("routing.router").warning("hello %s", "there")
logging.getLogger("nodes.model").debug("not at INFO")
"""


@pytest.mark.parametrize(
    ("encoding", "fmt", "json_lines", "to_stderr"),
    [
        ("TEXT", "", False, False),
        ("JSON", "", True, False),
        ("TEXT", "json", True, False),
        ("JSON", "text", False, False),
        ("TEXT", "", False, True),
    ],
)
def test_a_replica_writes_its_lines_to_its_serve_log_file(
    tmp_path: Any, encoding: str, fmt: str, json_lines: bool, to_stderr: bool
) -> None:
    path = str(tmp_path / "replica_shop_echo_r1.log")
    done = subprocess.run(
        [sys.executable, "-c", _REPLICA, path, encoding, fmt, "1" if to_stderr else "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = open(path).read().splitlines()
    # On stderr too where Serve writes there, never twice (not through the root logger).
    assert done.stderr.count("hello there") == (1 if to_stderr else 0)
    if to_stderr:
        assert line in done.stderr
    if json_lines:
        record = json.loads(line)
        assert record["message"] == "hello there" and record["logger"] == "routing.router"
        assert (record["request_id"], record["node"]) == ("req-9", "echo")
        assert (record["graph"], record["deployment"], record["replica"]) == ("shop", "echo", "r1")
    else:
        assert line.startswith("WARNING ")
        assert line.endswith(" echo r1 req-9 -- hello there [routing.router node=echo]")
