"""Logs and traces of a served graph: the request id (and node, trace) on the servegraph log lines
of the ingress and of a node's own replica, W3C traceparent in and out of every route, and one
OpenTelemetry span per node, with its parent, from every process.

One app for the module, with a node fused into the ingress and one in a deployment of its own:
double (fused) >> both (ensemble, fused) of echo (own deployment) and add_one (fused). Its
replicas get ``SERVEGRAPH_LOG_FORMAT=json``, ``SERVEGRAPH_LOG_LEVEL=DEBUG`` and
``SERVEGRAPH_OTEL_FILE`` from the building process (:func:`graphs.logs.forwarded_env`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from graphs import Graph, parse_traceparent, tensor
from tests.integration import helpers
from tests.support import (
    BASE_URL,
    apps_running,
    ensure_serve,
    serve_logs,
    wait_for,
)

APP = "observe"
URL = f"{BASE_URL}/{APP}"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
ROWS = {"inputs": {"x": [[1.0, 2.0, 3.0, 4.0]]}}


@pytest.fixture(scope="module")
def spans_file(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app deployed; the file its replicas append their finished spans to."""
    path = str(tmp_path_factory.mktemp("otel") / "spans.jsonl")
    g = Graph(APP, inputs=[tensor("x", "FP32", [-1, 4])])
    echo = g.model("echo", runtime="python", model_class=helpers.Echo, num_cpus=0)
    add_one = g.preprocess(helpers.add_one, name="add_one")
    both = g.ensemble("both", members=[echo, add_one], combiner="mean", outputs=["x"])
    g.entry = g.preprocess(helpers.double, name="double") >> both
    env = {
        "SERVEGRAPH_LOG_FORMAT": "json",
        "SERVEGRAPH_LOG_LEVEL": "DEBUG",
        "SERVEGRAPH_OTEL_FILE": path,
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        app = g.build()
    ensure_serve()
    with apps_running({APP: app}):
        yield path


def _json_lines(pattern: str, request_id: str) -> list[dict[str, Any]]:
    """servegraph's JSON lines of ``request_id`` in the Serve log files matching ``pattern``."""
    lines = [json.loads(x) for x in serve_logs(pattern).splitlines() if x.startswith("{")]
    return [x for x in lines if x.get("request_id") == request_id]


def test_log_lines_of_every_process_carry_the_request_id(
    spans_file: str, http: httpx.Client
) -> None:
    request_id = f"logs-{os.getpid()}"
    r = http.post(
        f"{URL}/predict", json=ROWS, headers={"X-Request-Id": request_id, "traceparent": INCOMING}
    )
    assert r.status_code == 200, r.text
    assert r.json()["request_id"] == request_id and r.json()["served_by"][0] == "double"

    def lines() -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
        # Every line the test looks for: the request's own (its access line is written as
        # the response goes out, so it may reach the file after the client has the answer).
        ingress = _json_lines(f"replica_{APP}_ingress_*", request_id)
        model = _json_lines(f"replica_{APP}_echo_*", request_id)
        nodes = {x["node"] for x in ingress}
        access = any(x["node"] is None and x["message"].startswith("POST ") for x in ingress)
        echo = any(x["message"].startswith("node echo: ok in ") for x in model)
        return (
            (ingress, model) if {"double", "both", "add_one"} <= nodes and access and echo else None
        )

    ingress, model = wait_for(lines, 15, "servegraph's log lines of the request")
    # Fused nodes log in the ingress replica, echo in its own: each line names its process.
    assert {x["deployment"] for x in ingress} == {"ingress"}
    assert {x["node"] for x in model} == {"echo"} and {x["deployment"] for x in model} == {"echo"}
    for line in ingress + model:
        assert line["graph"] == APP and line["trace_id"] == TRACE_ID and line["replica"]
        assert line["logger"] == "servegraph" and line["ts"].endswith("Z")
    assert any(x["node"] is None and x["message"].startswith("POST ") for x in ingress)
    assert any(x["message"].startswith("node echo: ok in ") for x in model)


def test_traceparent_comes_back_on_every_route_and_a_bad_one_starts_a_trace(
    spans_file: str, http: httpx.Client
) -> None:
    for method, path, body in [
        ("POST", "/predict", ROWS),
        ("GET", "/v2/health/live", None),
        ("GET", "/graph", None),
        ("POST", "/predict", {"inputs": {"x": [[1.0]]}}),  # 422
    ]:
        r = http.request(method, f"{URL}{path}", json=body, headers={"traceparent": INCOMING})
        assert r.status_code in (200, 422), (path, r.text)
        back = parse_traceparent(r.headers["traceparent"])
        assert back is not None and back.trace_id == TRACE_ID, path
        assert back.span_id != INCOMING.split("-")[2]  # the ingress's own span
    for bad in ("00-zz-01", f"00-{TRACE_ID.upper()}-00F067AA0BA902B7-01", "x" * 300):
        r = http.post(f"{URL}/predict", json=ROWS, headers={"traceparent": bad})
        assert r.status_code == 200, r.text
        back = parse_traceparent(r.headers["traceparent"])
        assert back is not None and back.trace_id != TRACE_ID
    r = http.post(f"{URL}/predict", json=ROWS)  # none sent: one is started
    assert parse_traceparent(r.headers["traceparent"]) is not None


def test_a_span_per_node_with_its_parent_from_every_process(
    spans_file: str, http: httpx.Client
) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    parent = f"00-{trace_id}-b7ad6b7169203331-01"
    r = http.post(f"{URL}/predict", json=ROWS, headers={"traceparent": parent})
    assert r.status_code == 200, r.text

    def spans() -> dict[str, dict[str, Any]] | None:
        with open(spans_file) as f:
            found = [json.loads(line) for line in f if trace_id in line]
        by_name = {s["name"]: s for s in found}
        return by_name if len(found) == 5 and len(by_name) == 5 else None

    by_name = wait_for(spans, 15, "the request's five spans")
    ingress = next(s for name, s in by_name.items() if name.endswith("/predict"))
    assert ingress["name"] == "POST /predict" and ingress["kind"] == "SpanKind.SERVER"
    assert ingress["parent_id"] == "0xb7ad6b7169203331"
    assert r.headers["traceparent"].split("-")[2] == ingress["context"]["span_id"][2:]
    parents = {"double": ingress, "both": ingress}
    parents.update(echo=by_name["both"], add_one=by_name["both"])
    for name, parent in parents.items():
        span = by_name[name]
        assert span["context"]["trace_id"] == f"0x{trace_id}"
        assert span["parent_id"] == parent["context"]["span_id"], name
        assert span["attributes"]["servegraph.node"] == name
        assert span["attributes"]["servegraph.graph"] == APP
        assert span["attributes"]["servegraph.outcome"] == "ok"
        assert span["resource"]["attributes"]["service.name"] == "servegraph"
    deployments = {n: by_name[n]["attributes"]["servegraph.deployment"] for n in parents}
    fused = dict.fromkeys(["double", "both", "add_one"], "ingress")
    assert deployments == {**fused, "echo": "echo"}
