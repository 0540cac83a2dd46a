"""W3C Trace Context (``traceparent``): parse a header, start a trace, make a child span id.

A ``traceparent`` is ``{version}-{trace-id}-{parent-id}-{trace-flags}`` in lower-case hex
(``00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01``). A header that breaks the
format (wrong lengths, upper case, an all-zero id, version ``ff``) is ignored and a new trace
starts, as the specification says; a later version's header is read by its first four fields.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

__all__ = ["TRACEPARENT", "TraceParent", "new_span_id", "new_trace_id", "parse_traceparent"]

#: ctx key (and HTTP header) carrying the caller's span to the callee, as a header string.
TRACEPARENT = "traceparent"

_HEADER = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def new_trace_id() -> str:
    """A random, non-zero 128-bit trace id (32 hex digits)."""
    while True:  # random, like OpenTelemetry's own ids (not secrets: they name, never guard)
        value = f"{random.getrandbits(128):032x}"
        if value != _ZERO_TRACE:
            return value


def new_span_id() -> str:
    """A random, non-zero 64-bit span id (16 hex digits)."""
    while True:
        value = f"{random.getrandbits(64):016x}"
        if value != _ZERO_SPAN:
            return value


@dataclass(frozen=True)
class TraceParent:
    """One span's place in a trace: what a ``traceparent`` header says.

    Attributes:
        trace_id: the trace (32 lower-case hex digits).
        span_id: the span (16 lower-case hex digits); a callee's parent.
        flags: trace flags (``1``: sampled).
    """

    trace_id: str
    span_id: str
    flags: int = 1

    @classmethod
    def start(cls, sampled: bool = True) -> TraceParent:
        """The root span of a new trace."""
        return cls(new_trace_id(), new_span_id(), 1 if sampled else 0)

    def child(self, span_id: str | None = None) -> TraceParent:
        """A span of the same trace whose parent is this one (a new span id unless given)."""
        return TraceParent(self.trace_id, span_id or new_span_id(), self.flags)

    @property
    def sampled(self) -> bool:
        """Whether the caller recorded its span (flag bit 0)."""
        return bool(self.flags & 1)

    def header(self) -> str:
        """The ``traceparent`` header value (version 00)."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"

    def __str__(self) -> str:
        return self.header()


def parse_traceparent(value: str | bytes | None) -> TraceParent | None:
    """The span a ``traceparent`` header names, or None when it is absent or malformed.

    Args:
        value: the header's value (surrounding blanks are ignored).
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    match = _HEADER.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None  # ff is never valid; version 00 has exactly four fields
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceParent(trace_id, span_id, int(flags, 16))
