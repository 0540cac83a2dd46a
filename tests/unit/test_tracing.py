"""Trace context through a graph run in-process (every node fused, no Ray): the ingress layer's
traceparent in and out, a span per node with the right parents (OpenTelemetry's in-memory
exporter), and the request in scope on every log line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from graphs import Graph, otel, tensor
from graphs.logs import JsonFormatter, RequestContext
from graphs.middleware import ErrorBoundary
from graphs.runner import GraphRunner
from graphs.traceparent import TRACEPARENT, parse_traceparent
from graphs.tracing import TraceContext, traced_stream
from graphs.validate import parse_graph
from tests.integration import helpers

INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.set_tracer_provider(provider)
    yield exporter
    otel.set_tracer_provider(None)
    provider.shutdown()


@pytest.fixture(scope="module")
def runner() -> GraphRunner:
    """double >> split: echo (0.5) or both (0.5: the ensemble of echo and add_one), all fused."""
    g = Graph("local", inputs=[tensor("x", "FP32", [-1, 4])], fusion="all")
    echo = g.model("echo", runtime="python", model_class=helpers.Echo, num_cpus=0)
    add_one = g.preprocess(helpers.add_one, name="add_one")
    both = g.ensemble("both", members=[echo, add_one], combiner="mean", outputs=["x"])
    split = g.router("split", {echo: 0.5, both: 0.5})
    g.entry = g.preprocess(helpers.double, name="double") >> split
    return GraphRunner(parse_graph(g.spec()), {})


def _app(runner: GraphRunner, fail: bool = False) -> Any:
    """The graph behind the ingress's outer layers (TraceContext > ErrorBoundary): POST runs it
    and answers the nodes that served and the traceparent the nodes got."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        ctx = runner.context("req-1")
        if fail:
            raise RuntimeError("unexpected")
        payload = {"x": np.ones((1, 4), dtype=np.float32)}
        _, served, _ = await runner.run(payload, ctx)
        body = json.dumps({"served_by": served, "traceparent": ctx[TRACEPARENT]}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    inner = ErrorBoundary(app, request_id=lambda: "req-1")
    return TraceContext(inner, graph="local", request_id=lambda: "req-1")


def _post(app: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://graph") as client:
            return await client.post("/predict", headers=headers or {})

    return asyncio.run(go())


def test_traceparent_round_trip_without_opentelemetry(runner: GraphRunner) -> None:
    r = _post(_app(runner), {"traceparent": INCOMING})
    assert r.status_code == 200
    back = parse_traceparent(r.headers["traceparent"])
    incoming = parse_traceparent(INCOMING)
    assert back is not None and incoming is not None
    assert back.trace_id == incoming.trace_id and back.span_id != incoming.span_id
    # The nodes' parent is the ingress's span, the one the response names.
    assert r.json()["traceparent"] == back.header()


@pytest.mark.parametrize(
    "header", [None, "00-garbage-01", "ff-" + "a" * 32 + "-" + "b" * 16 + "-01"]
)
def test_without_a_valid_traceparent_a_new_trace_starts(
    runner: GraphRunner, header: str | None
) -> None:
    r = _post(_app(runner), {"traceparent": header} if header else {})
    assert r.status_code == 200
    back = parse_traceparent(r.headers["traceparent"])
    assert back is not None and back.trace_id != INCOMING.split("-")[1]
    assert r.json()["traceparent"] == back.header()


def test_error_responses_carry_traceparent(runner: GraphRunner) -> None:
    r = _post(_app(runner, fail=True), {"traceparent": INCOMING})
    assert r.status_code == 500 and r.json()["error_id"]
    back = parse_traceparent(r.headers["traceparent"])
    assert back is not None and back.trace_id == INCOMING.split("-")[1]


def test_a_span_per_node_child_of_its_caller(
    runner: GraphRunner, spans: InMemorySpanExporter
) -> None:
    seen: set[str] = set()
    for _ in range(40):  # until the router has chosen each arm once
        spans.clear()
        r = _post(_app(runner), {"traceparent": INCOMING})
        served = r.json()["served_by"]
        by_name = {s.name: s for s in spans.get_finished_spans()}
        assert set(by_name) == {"POST /predict", *served}
        ingress = by_name["POST /predict"]
        assert format(ingress.parent.span_id, "016x") == "00f067aa0ba902b7"
        assert r.headers["traceparent"].split("-")[2] == format(ingress.context.span_id, "016x")
        parents = {"double": "POST /predict", "split": "POST /predict", served[2]: "split"}
        if served[2] == "both":
            parents.update(echo="both", add_one="both")
        for name, parent in parents.items():
            span = by_name[name]
            assert span.context.trace_id == int(INCOMING.split("-")[1], 16)
            assert span.parent.span_id == by_name[parent].context.span_id, name
            assert span.attributes["servegraph.node"] == name
            assert span.attributes["servegraph.graph"] == "local"
            assert span.attributes["servegraph.outcome"] == "ok"
        assert by_name["split"].attributes["servegraph.arm"] == served[2]
        assert ingress.attributes["http.response.status_code"] == 200
        seen.add(served[2])
        if seen == {"echo", "both"}:
            break
    assert seen == {"echo", "both"}


def test_node_log_lines_carry_the_request_node_and_span(
    runner: GraphRunner, spans: InMemorySpanExporter
) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestContext())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("servegraph")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        _post(_app(runner), {"traceparent": INCOMING})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    by_span = {format(s.context.span_id, "016x"): s.name for s in spans.get_finished_spans()}
    nodes = [line for line in lines if line["message"].startswith("node ")]
    assert {line["node"] for line in nodes} >= {"double", "split"}
    for line in lines:
        assert line["request_id"] == "req-1" and line["graph"] == "local"
        assert line["trace_id"] == INCOMING.split("-")[1]
        assert by_span[line["span_id"]] == (line["node"] or "POST /predict")
    assert lines[-1]["message"].startswith("POST /predict: 200 in ")


class _Streamer:
    """A node whose stream yields three items (what NodeCore.stream gets wrapped around)."""

    name = "llm"

    @traced_stream
    async def stream(self, payload: Any, ctx: dict[str, Any]) -> AsyncIterator[Any]:
        for i in range(3):
            yield {"i": i, "parent": ctx[TRACEPARENT]}


def test_a_stream_is_one_span_until_its_last_item_or_its_close(
    spans: InMemorySpanExporter,
) -> None:
    async def main() -> tuple[list[Any], list[Any]]:
        whole = [item async for item in _Streamer().stream({}, {TRACEPARENT: INCOMING})]
        partial = _Streamer().stream({}, {TRACEPARENT: INCOMING})
        first = [await partial.__anext__()]
        await partial.aclose()  # the client went away
        return whole, first

    whole, first = asyncio.run(main())
    assert [item["i"] for item in whole] == [0, 1, 2] and first[0]["i"] == 0
    done, closed = spans.get_finished_spans()
    for span in (done, closed):
        assert span.name == "llm" and format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert whole[0]["parent"].split("-")[2] == format(done.context.span_id, "016x")
    assert done.attributes["servegraph.outcome"] == "ok"
    assert closed.attributes["servegraph.outcome"] == "cancelled"


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"SERVEGRAPH_OTEL": "1"}, True),
        ({"SERVEGRAPH_OTEL_FILE": "/tmp/x.jsonl"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "console", "SERVEGRAPH_OTEL": "0"}, False),
        ({"SERVEGRAPH_OTEL": "1", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_spans_are_on_only_when_asked_for(env: dict[str, str], on: bool) -> None:
    assert otel.enabled(env) is on
