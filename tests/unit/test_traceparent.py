"""W3C traceparent: parsing (malformed headers ignored), new traces and child spans."""

from __future__ import annotations

import pytest

from graphs.traceparent import TraceParent, new_span_id, new_trace_id, parse_traceparent

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_header_is_read_field_by_field() -> None:
    tp = parse_traceparent(VALID)
    assert tp == TraceParent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1)
    assert tp.sampled and tp.header() == VALID and str(tp) == VALID
    assert parse_traceparent(f"  {VALID}\t".encode()) == tp  # bytes, blanks around
    unsampled = parse_traceparent(VALID[:-2] + "00")
    assert unsampled is not None and not unsampled.sampled and unsampled.header().endswith("-00")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        VALID.upper(),  # upper-case hex
        VALID[:-1],  # flags one digit short
        VALID + "-extra",  # version 00 has exactly four fields
        "ff" + VALID[2:],  # version ff is invalid
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",  # all-zero span id
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # trace id 31 digits
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",  # not hex
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
    ],
)
def test_malformed_headers_are_ignored(header: str | None) -> None:
    assert parse_traceparent(header) is None


def test_a_later_version_is_read_by_its_first_four_fields() -> None:
    tp = parse_traceparent("01" + VALID[2:] + "-what-comes-later")
    assert tp == TraceParent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1)
    assert tp.header() == VALID  # answered in the version we speak


def test_a_child_keeps_the_trace_and_flags_with_a_new_span() -> None:
    parent = parse_traceparent(VALID[:-2] + "00")
    assert parent is not None
    children = {parent.child() for _ in range(50)}
    assert len(children) == 50
    for child in children:
        assert child.trace_id == parent.trace_id and child.flags == 0
        assert child.span_id != parent.span_id and len(child.span_id) == 16
        assert parse_traceparent(child.header()) == child
    assert parent.child("1234567890abcdef").span_id == "1234567890abcdef"


def test_new_traces_and_ids_are_random_and_well_formed() -> None:
    traces = [TraceParent.start() for _ in range(50)]
    assert len({t.trace_id for t in traces}) == 50
    assert all(parse_traceparent(t.header()) == t and t.sampled for t in traces)
    assert not TraceParent.start(sampled=False).sampled
    assert len(new_trace_id()) == 32 and len(new_span_id()) == 16
    assert int(new_trace_id(), 16) and int(new_span_id(), 16)
