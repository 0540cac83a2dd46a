"""What a run's records say: requests sent and failed (by kind), error windows, and failures
relative to the faults.

Error windows: failures (ordered by when they started) whose starts lie less than
:data:`WINDOW_GAP_S` apart belong to one window; a window lasts from its first failure's start to
its last failure's end. ``longest_error_window_s`` is the longest of them, ``failure_span_s`` the
time from the first failure's start to the last one's end (the two differ when failures come in
separate bursts). A failure "after T+5 s" started more than 5 s after the latest fault injected
before it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from .client import Rec

#: Failures closer together than this belong to one error window.
WINDOW_GAP_S = 1.0
#: Failures this long after their fault count as "late" (the issue's "none after 5 s").
LATE_S = 5.0
#: Failures listed one by one in a scenario's result (the markdown shows the first 25).
MAX_LISTED = 500


def pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (as the benchmarks' loadgen), None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def windows(failures: Sequence[Rec]) -> list[tuple[float, float, int]]:
    """Error windows ``(start, end, failures)`` of ``failures`` (see the module docstring)."""
    out: list[tuple[float, float, int]] = []
    for rec in sorted(failures, key=lambda r: r.start):
        if out and rec.start <= out[-1][1] + WINDOW_GAP_S:
            start, end, n = out[-1]
            out[-1] = (start, max(end, rec.end), n + 1)
        else:
            out.append((rec.start, rec.end, 1))
    return out


def latest_fault(faults: Sequence[float], t: float) -> float | None:
    """The latest fault time at or before ``t``."""
    before = [f for f in faults if f <= t]
    return max(before) if before else None


def summarize(
    records: Iterable[Rec],
    faults: Sequence[float],
    *,
    kind: str = "predict",
    origin: float | None = None,
) -> dict[str, Any]:
    """Counts, error windows and latencies of the ``kind`` records; times in the listed
    failures are seconds after ``origin`` (default: the first fault, else the first request)."""
    recs = [r for r in records if r.kind == kind]
    if not recs:
        return {"sent": 0, "failed": 0}
    failures = [r for r in recs if not r.ok]
    if origin is None:
        origin = min(faults) if faults else min(r.start for r in recs)
    span = (min(r.start for r in recs), max(r.end for r in recs))
    wins = windows(failures)
    late = []
    for r in failures:
        fault = latest_fault(faults, r.end)
        if fault is not None and r.start - fault > LATE_S:
            late.append(r)
    ok_ms = [(r.end - r.start) * 1000 for r in recs if r.ok]
    out: dict[str, Any] = {
        "sent": len(recs),
        "ok": len(recs) - len(failures),
        "failed": len(failures),
        "failed_pct": round(100.0 * len(failures) / len(recs), 4),
        "failed_by_kind": dict(Counter(r.error for r in failures)),
        "longest_error_window_s": round(max((e - s for s, e, _ in wins), default=0.0), 3),
        "error_windows": len(wins),
        "failure_span_s": (
            round(max(r.end for r in failures) - min(r.start for r in failures), 3)
            if failures
            else 0.0
        ),
        "failures_after_fault_plus_5s": len(late),
        "failures_before_first_fault": sum(1 for r in failures if faults and r.end < min(faults)),
        "duration_s": round(span[1] - span[0], 2),
        "rps": round(len(recs) / max(span[1] - span[0], 1e-9), 1),
        "p50_ms": _round(pct(ok_ms, 0.5)),
        "p95_ms": _round(pct(ok_ms, 0.95)),
        "p99_ms": _round(pct(ok_ms, 0.99)),
        "failures": [listed(r, origin, faults) for r in sorted(failures, key=lambda r: r.start)][
            :MAX_LISTED
        ],
    }
    return out


def listed(rec: Rec, origin: float, faults: Sequence[float]) -> dict[str, Any]:
    """One failure for the report: when (after ``origin`` and after its fault), what, which."""
    fault = latest_fault(faults, rec.end)
    return {
        "t_start_s": round(rec.start - origin, 3),
        "took_s": round(rec.end - rec.start, 3),
        "after_fault_s": None if fault is None else round(rec.start - fault, 3),
        "error": rec.error,
        "detail": rec.detail,
        "request_id": rec.request_id,
    }


def latencies_ms(records: Iterable[Rec], predicate: Any) -> list[float]:
    """Latencies (ms) of the 200 predicts ``predicate(rec)`` selects."""
    return [
        (r.end - r.start) * 1000 for r in records if r.kind == "predict" and r.ok and predicate(r)
    ]


def served_counts(records: Iterable[Rec], kind: str = "predict") -> dict[str, int]:
    """200 answers of ``kind`` by the node that served them (the last of ``served_by``)."""
    counts: Counter[str] = Counter()
    for r in records:
        if r.kind == kind and r.ok and r.served_by:
            counts[r.served_by[-1]] += 1
    return dict(counts)


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)
