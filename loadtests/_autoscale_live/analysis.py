"""The analysis of one run: per-second latency and throughput, replica timings, SLO share."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any


def pct(values: Sequence[float], q: float) -> float | None:
    """The ``q``-quantile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    s = sorted(values)
    return float(s[max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))])


def _at(samples: Sequence[dict[str, Any]], t: float, key: str) -> int | None:
    """Sample-and-hold value of ``key`` at ``t`` (the last sample at or before ``t``)."""
    last = None
    for s in samples:
        if s["t"] > t:
            break
        if key in s:
            last = s[key]
    return last


def _first_change(
    samples: Sequence[dict[str, Any]], t_from: float, t_to: float, key: str, up: bool
) -> float | None:
    """Seconds after ``t_from`` until ``key`` first rises (``up``) or falls below its value
    at ``t_from``; None if it does not before ``t_to``."""
    base = _at(samples, t_from, key)
    if base is None:
        return None
    for s in samples:
        if s["t"] <= t_from or s["t"] > t_to or key not in s:
            continue
        if (s[key] > base) if up else (s[key] < base):
            return float(s["t"] - t_from)
    return None


def _first_reach(
    samples: Sequence[dict[str, Any]], t_from: float, t_to: float, key: str, level: int
) -> float | None:
    """Seconds after ``t_from`` until ``key`` first reaches ``level``; None if not by ``t_to``."""
    for s in samples:
        if t_from < s["t"] <= t_to and s.get(key, -1) >= level:
            return float(s["t"] - t_from)
    return None


def timeline(
    run: dict[str, Any], spec: dict[str, Any]
) -> tuple[float, float, float, float, list[dict[str, Any]], list[tuple[float, float, int]]]:
    """A step run's load start ``t0`` (epoch s) and, after it: total length, step up, step
    down, and its samples and requests ``(end, latency ms, ok)`` shifted to that origin."""
    phases = run["phases"]
    t0 = float(phases.get("t0") or (run["requests"][0][0] if run["requests"] else 0.0))
    low_s, high_s, tail_s = spec["low_s"], spec["high_s"], spec["tail_s"]
    # Phase starts as the shape actually ticked them (the shape ticks once a second).
    ps = phases.get("phase_start", {})
    up = float(ps["high"] - t0) if "high" in ps else float(low_s)
    down = float(ps["tail"] - t0) if "tail" in ps else float(low_s + high_s)
    samples = [{**s, "t": s["t"] - t0} for s in run["samples"]]
    reqs = [(e - t0, lat, ok) for e, lat, ok in run["requests"]]
    return t0, float(low_s + high_s + tail_s), up, down, samples, reqs


def analyse(run: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Per-second series and the table's figures of one run (times relative to the load's start)."""
    _, total, up, down, samples, reqs = timeline(run, spec)

    seconds = math.ceil(total)
    windows = []
    for w in range(seconds):
        lats = [lat for t, lat, ok in reqs if w <= t < w + 1 and ok]
        errs = sum(1 for t, _, ok in reqs if w <= t < w + 1 and not ok)
        windows.append(
            {
                "t": w,
                "n": len(lats),
                "errors": errs,
                "rps": len(lats),
                "p50_ms": pct(lats, 0.50),
                "p95_ms": pct(lats, 0.95),
                "running": _at(samples, w + 1, "running"),
                "target": _at(samples, w + 1, "target"),
            }
        )
    slo = spec["slo_ms"]

    def attainment(lo: float, hi: float) -> float | None:
        ws = [w for w in windows if lo <= w["t"] and w["t"] + 1 <= hi and w["p95_ms"] is not None]
        if not ws:
            return None
        return 100.0 * sum(1 for w in ws if w["p95_ms"] <= slo) / len(ws)

    # Replica-seconds: running replicas, sample-and-hold over [0, total].
    rs = 0.0
    inside = [s for s in samples if "running" in s]
    for a, b in itertools.pairwise(inside):
        lo, hi = max(a["t"], 0.0), min(b["t"], total)
        if hi > lo:
            rs += a["running"] * (hi - lo)
    at_step = _at(samples, up, "running") or 0
    max_replicas = int(
        (run["graph_node"].get("autoscaling") or run["graph_node"].get("autoscaling_config"))[
            "max_replicas"
        ]
    )
    doubled = min(max(2 * at_step, at_step + 1), max_replicas)
    peak_high = max((s.get("running", 0) for s in samples if up <= s["t"] <= down), default=0)
    high_lats = [lat for t, lat, ok in reqs if up <= t < down and ok]
    high_n = len(high_lats)
    in_run = [s for s in samples if 0 <= s["t"] <= total]
    return {
        "t_step_up_s": round(up, 2),
        "t_step_down_s": round(down, 2),
        "scale_up_decision_s": _first_change(samples, up, total, "target", up=True),
        "scale_up_running_s": _first_change(samples, up, total, "running", up=True),
        "doubled_running_s": _first_reach(samples, up, total, "running", doubled),
        "doubled_to": doubled,
        "peak_high_running_s": _first_reach(samples, up, down, "running", peak_high),
        "peak_high_running": peak_high,
        "peak_running": max((s.get("running", 0) for s in in_run), default=None),
        "peak_target": max((s.get("target", 0) for s in in_run), default=None),
        "running_at_step_up": _at(samples, up, "running"),
        "running_at_step_down": _at(samples, down, "running"),
        "running_at_end": _at(samples, total, "running"),
        "replica_seconds": round(rs, 1),
        "p50_high_ms": pct(high_lats, 0.50),
        "p95_high_ms": pct(high_lats, 0.95),
        "rps_high": round(high_n / max(down - up, 1e-9), 1),
        "slo_attainment_pct": attainment(0, total),
        "slo_attainment_high_pct": attainment(up, down),
        "scale_down_decision_s": _first_change(samples, down, total, "target", up=False),
        "scale_down_running_s": _first_change(samples, down, total, "running", up=False),
        "requests": len(reqs),
        "errors": sum(1 for _, _, ok in reqs if not ok),
        "windows": windows,
        "replica_series": [
            [round(s["t"], 2), s.get("running"), s.get("target")]
            for s in samples
            if -5 <= s["t"] <= total + 5
        ],
    }
