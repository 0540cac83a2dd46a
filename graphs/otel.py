"""OpenTelemetry spans, when the ``otel`` extra is installed and tracing is asked for.

The only module that imports ``opentelemetry``, and only once a span is first wanted: without
the extra, or with tracing off, :func:`tracer` is None and nothing is imported. Tracing is on
when ``SERVEGRAPH_OTEL=1``, ``SERVEGRAPH_OTEL_FILE`` is set, or OpenTelemetry's own
``OTEL_TRACES_EXPORTER`` names an exporter (not ``none``); ``SERVEGRAPH_OTEL=0`` or
``OTEL_SDK_DISABLED=true`` turn it off.

Spans go to the tracer provider the process already has (e.g. set up by
``opentelemetry-instrument``); else servegraph sets up the SDK's with the exporters
``OTEL_TRACES_EXPORTER`` names (``otlp``, ``console``, ...: OpenTelemetry's entry points, batched)
and, with ``SERVEGRAPH_OTEL_FILE=<path>``, one JSON object per finished span appended to that
file. The service name is ``OTEL_SERVICE_NAME``, else ``servegraph``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping
from typing import Any

from graphs.traceparent import TraceParent

__all__ = ["attach", "detach", "enabled", "end_span", "set_tracer_provider", "start_span", "tracer"]

log = logging.getLogger("servegraph")

_OFF = ("0", "false", "no", "off")
_UNSET: Any = object()
_tracer: Any = _UNSET
_provider: Any = None


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``environ`` (default: this process's) asks for spans and the SDK is installed."""
    env = os.environ if environ is None else environ
    flag = env.get("SERVEGRAPH_OTEL", "").strip().lower()
    if flag in _OFF or env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporters = [e.strip() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    wanted = (
        flag in ("1", "true", "yes", "on")
        or bool(env.get("SERVEGRAPH_OTEL_FILE"))
        or any(e and e != "none" for e in exporters)
    )
    return wanted and importlib.util.find_spec("opentelemetry.sdk") is not None


def set_tracer_provider(provider: Any) -> None:
    """Use ``provider`` (an OpenTelemetry ``TracerProvider``) for servegraph's spans, whatever the
    environment says; None goes back to the environment's choice (read again at the next span)."""
    global _tracer, _provider
    _provider = provider
    _tracer = _UNSET


def tracer() -> Any:
    """servegraph's OpenTelemetry tracer, or None when spans are off (decided once)."""
    global _tracer
    if _tracer is _UNSET:
        if _provider is not None:
            _tracer = _provider.get_tracer("servegraph")
        elif enabled():
            _tracer = _default_provider().get_tracer("servegraph")
        else:
            _tracer = None
    return _tracer


def _default_provider() -> Any:
    """The process's SDK tracer provider, set up from the environment when it has none."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "servegraph"}
    provider = TracerProvider(resource=Resource.create(attributes))
    _add_exporters(provider)
    trace.set_tracer_provider(provider)
    return trace.get_tracer_provider()


def _add_exporters(provider: Any) -> None:
    from importlib.metadata import entry_points

    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    path = os.environ.get("SERVEGRAPH_OTEL_FILE")
    if path:
        out = open(path, "a", buffering=1)  # open for the process's life
        exporter = ConsoleSpanExporter(
            out=out, formatter=lambda span: span.to_json(indent=None) + "\n"
        )
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    for name in os.environ.get("OTEL_TRACES_EXPORTER", "").split(","):
        name = name.strip()
        if not name or name == "none":
            continue
        found = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            log.warning(
                "OTEL_TRACES_EXPORTER names %r, which no installed package provides "
                "(e.g. pip install opentelemetry-exporter-otlp); its spans are dropped",
                name,
            )
            continue
        provider.add_span_processor(BatchSpanProcessor(next(iter(found)).load()()))


def start_span(
    name: str, parent: TraceParent | None, attributes: Mapping[str, Any], server: bool = False
) -> tuple[Any, TraceParent]:
    """Start a span named ``name``, child of ``parent`` (a remote span; None: a new trace, or
    the process's current span), and the span with its own trace context.

    Raises:
        RuntimeError: spans are off (:func:`tracer` is None).
    """
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

    spans = tracer()
    if spans is None:
        raise RuntimeError("OpenTelemetry spans are off")
    context = None
    if parent is not None:
        remote = SpanContext(
            int(parent.trace_id, 16),
            int(parent.span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(parent.flags),
        )
        context = trace.set_span_in_context(NonRecordingSpan(remote))
    kind = SpanKind.SERVER if server else SpanKind.INTERNAL
    span = spans.start_span(name, context=context, kind=kind, attributes=dict(attributes))
    own = span.get_span_context()
    return span, TraceParent(
        format(own.trace_id, "032x"), format(own.span_id, "016x"), int(own.trace_flags)
    )


def end_span(span: Any, attributes: Mapping[str, Any], error: BaseException | None = None) -> None:
    """Set ``attributes`` on ``span``, record ``error`` (status ERROR) if any, and end it."""
    from opentelemetry.trace import Status, StatusCode

    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key, value)
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    span.end()


def attach(span: Any) -> Any:
    """Make ``span`` OpenTelemetry's current span (user code and instrumented libraries called
    from a node start their spans under it) until :func:`detach` with the token returned."""
    from opentelemetry import context, trace

    return context.attach(trace.set_span_in_context(span))


def detach(token: Any) -> None:
    """Undo the :func:`attach` that returned ``token``."""
    from opentelemetry import context

    context.detach(token)
