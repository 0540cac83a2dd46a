"""The analysis of the run: per-second latency and throughput, per-node replica figures, the
order in which nodes scaled, and the three checks' evidence."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from _autoscale_live.analysis import pct, timeline

from .scenario import (
    DOWNSTREAM,
    NODES,
    RATE_REASONS,
    SAMPLE_EVERY_S,
    TARGET_UTILISATION,
    WAITING,
    WEIGHTS,
)


def _series(samples: Sequence[dict[str, Any]], node: str, key: str) -> list[tuple[float, Any]]:
    return [(s["t"], s[node][key]) for s in samples if key in s.get(node, {})]


def _at(series: Sequence[tuple[float, Any]], t: float) -> Any:
    """Sample-and-hold value at ``t`` (the last sample at or before ``t``)."""
    last = None
    for ts, v in series:
        if ts > t:
            break
        last = v
    return last


def queued(sample: dict[str, Any], node: str, max_ongoing: int) -> float | None:
    """Requests waiting for a replica of ``node`` in one sample: what the controller counts in
    flight (running + queued at the callers' handles, averaged over its look-back) beyond what
    the running replicas hold at most."""
    row = sample.get(node, {})
    if "ongoing" not in row or "running" not in row:
        return None
    return max(0.0, row["ongoing"] - max_ongoing * row["running"])


def saturated(
    sample: dict[str, Any], node: str, settings: dict[str, Any], max_ongoing: int
) -> bool:
    """``node`` is saturated in ``sample``: requests wait for its replicas, or it is at its
    most replicas with every one full (in flight per replica at its target or more)."""
    q = queued(sample, node, max_ongoing)
    row = sample.get(node, {})
    if q is not None and q > WAITING:
        return True
    target = row.get("target")
    if target is None or target < settings[node]["max_replicas"]:
        return False
    per = row.get("ongoing", 0.0) / max(row.get("running", 0) or 1, 1)
    return bool(per >= settings[node].get("target_queue_per_replica", 2.0))


def analyse(
    run: dict[str, Any],
    spec: dict[str, Any],
    settings: dict[str, dict[str, Any]],
    max_ongoing: dict[str, int],
) -> dict[str, Any]:
    """Per-second series, per-node figures and the checks' evidence (times after load start)."""
    t0, total, up, down, samples, reqs = timeline(run, spec)
    decisions = [{**d, "t": d["ts"] - t0} for d in run["decisions"]]
    slo = spec["slo_ms"]

    windows = []
    for w in range(math.ceil(total)):
        lats = [lat for t, lat, ok in reqs if w <= t < w + 1 and ok]
        windows.append(
            {
                "t": w,
                "rps": len(lats),
                "errors": sum(1 for t, _, ok in reqs if w <= t < w + 1 and not ok),
                "p50_ms": pct(lats, 0.50),
                "p95_ms": pct(lats, 0.95),
            }
        )

    def attainment(lo: float, hi: float) -> float | None:
        ws = [w for w in windows if lo <= w["t"] and w["t"] + 1 <= hi and w["p95_ms"] is not None]
        if not ws:
            return None
        return 100.0 * sum(1 for w in ws if w["p95_ms"] <= slo) / len(ws)

    per_node: dict[str, dict[str, Any]] = {}
    for n in NODES:
        running = _series(samples, n, "running")
        rs = 0.0
        for (ta, a), (tb, _) in itertools.pairwise(running):
            lo, hi = max(ta, 0.0), min(tb, total)
            if hi > lo:
                rs += a * (hi - lo)
        mine = [d for d in decisions if d["node"] == n]
        ups = [d for d in mine if d["to"] > d["from"] and d["t"] >= up]
        first = ups[0] if ups else None
        in_run = [s for s in samples if 0 <= s["t"] <= total and n in s]
        qs = [(s["t"], queued(s, n, max_ongoing[n])) for s in in_run]
        queue_built = next((t for t, q in qs if t >= up and q is not None and q > WAITING), None)
        before = [q for t, q in qs if first and up <= t <= first["t"] and q is not None]
        per_node[n] = {
            "first_up_s": round(first["t"] - up, 2) if first else None,
            "first_up": f"{first['from']} -> {first['to']}" if first else None,
            "first_up_reason": first["reason"] if first else None,
            "queue_built_s": round(queue_built - up, 2) if queue_built is not None else None,
            "max_queued_before_first_up": round(max(before), 2) if before else None,
            "peak_target": max((s[n].get("target", 0) for s in in_run), default=None),
            "peak_running": max((s[n].get("running", 0) for s in in_run), default=None),
            "max_replicas": settings[n]["max_replicas"],
            "running_at_end": _at(running, total),
            "replica_seconds": round(rs, 1),
            "ups": len([d for d in mine if d["to"] > d["from"]]),
            "downs": len([d for d in mine if d["to"] < d["from"]]),
            "series": [
                [
                    round(s["t"], 2),
                    s[n].get("running"),
                    s[n].get("target"),
                    s[n].get("ongoing"),
                    queued(s, n, max_ongoing[n]),
                ]
                for s in samples
                if -5 <= s["t"] <= total + 5 and n in s
            ],
        }
    order = sorted(
        (n for n in NODES if per_node[n]["first_up_s"] is not None),
        key=lambda n: per_node[n]["first_up_s"],
    )

    # Check 3's evidence: every scale-up of a node while a node downstream of it is saturated
    # (the sample at or just before the decision), and how long any was saturated.
    def sample_before(t: float) -> dict[str, Any] | None:
        prior = [s for s in samples if s["t"] <= t]
        return prior[-1] if prior else None

    grown_while_saturated = []
    for d in decisions:
        if d["to"] <= d["from"] or not DOWNSTREAM.get(d["node"]):
            continue
        s = sample_before(d["t"])
        hot = [m for m in DOWNSTREAM[d["node"]] if s and saturated(s, m, settings, max_ongoing[m])]
        if hot and s:
            state = {
                m: {
                    **{k: s[m].get(k) for k in ("running", "target", "ongoing")},
                    "waiting": queued(s, m, max_ongoing[m]),
                    # The policy's load ratio: in flight over *target* replicas (those still
                    # starting count) over the target per replica.
                    "load_ratio": round(
                        s[m].get("ongoing", 0.0)
                        / max(s[m].get("target") or 1, 1)
                        / settings[m].get("target_queue_per_replica", 2.0),
                        2,
                    ),
                }
                for m in hot
            }
            grown_while_saturated.append({**d, "saturated": hot, "downstream": state})
    saturated_s = {
        n: round(
            SAMPLE_EVERY_S
            * sum(
                1
                for s in samples
                if 0 <= s["t"] <= total and saturated(s, n, settings, max_ongoing[n])
            ),
            1,
        )
        for n in NODES
    }
    # The rates the graph policy compares, as GET /live gives them (a proxy: one replica's
    # rate times the running replicas): a is raised from the upstream rate when 0.8 x the
    # upstream rate exceeds ANTICIPATION x its own and the replicas that rate needs at a's
    # service time are more than it has.
    rates = [(s["t"], s["rps"]) for s in samples if s.get("rps")]
    first_a = per_node["a"]["first_up_s"]
    at_first = None
    prior = [
        (t, r)
        for t, r in rates
        if up <= t and (first_a is None or t <= up + first_a) and {"prep", "slow", "a"} <= set(r)
    ]
    if first_a is not None and prior:
        t, r = prior[-1]
        expected = WEIGHTS["a"] * max(r["slow"], r["prep"])
        svc = r.get("a_service_ms")
        at_first = {
            "t_s": round(t - up, 2),
            "prep_rps": r["prep"],
            "slow_rps": r["slow"],
            "a_rps": r["a"],
            "a_expected_rps": round(expected, 1),
            "a_service_ms": svc,
            "a_need_at_expected": (
                math.ceil(expected * svc / 1000.0 / TARGET_UTILISATION - 1e-9) if svc else None
            ),
        }
    slow_p95 = [r["slow_p95_ms"] for t, r in rates if up <= t <= down and "slow_p95_ms" in r]
    high_lats = [lat for t, lat, ok in reqs if up <= t < down and ok]
    return {
        "t_step_up_s": round(up, 2),
        "t_step_down_s": round(down, 2),
        "nodes": per_node,
        "order": order,
        "grown_while_saturated": grown_while_saturated,
        "saturated_s": saturated_s,
        "rates_at_a_first_up": at_first,
        "a_service_ms_high": pct(
            [r["a_service_ms"] for t, r in rates if up <= t <= down and "a_service_ms" in r], 0.5
        ),
        "slow_node_p95_high_ms": (
            {"median": pct(slow_p95, 0.5), "max": max(slow_p95), "readings": len(slow_p95)}
            if slow_p95
            else None
        ),
        "upstream_ups": [d for d in decisions if d["node"] == "prep" and d["to"] > d["from"]],
        "rate_reasons": list(RATE_REASONS),
        "p50_high_ms": pct(high_lats, 0.50),
        "p95_high_ms": pct(high_lats, 0.95),
        "rps_high": round(len(high_lats) / max(down - up, 1e-9), 1),
        "slo_attainment_pct": attainment(0, total),
        "slo_attainment_high_pct": attainment(up, down),
        "requests": len(reqs),
        "errors": sum(1 for _, _, ok in reqs if not ok),
        "windows": windows,
        "decisions": [{k: d[k] for k in ("t", "node", "from", "to", "reason")} for d in decisions],
    }
