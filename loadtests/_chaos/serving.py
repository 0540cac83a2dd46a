"""Scenarios 1, 2 and 5: replicas killed under load, and a model that hangs."""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

import _harness as h

from . import analysis, apps, faults
from .common import (
    LEAD_MIN_S,
    Sampler,
    deploy,
    drive,
    fault_times,
    graph_view,
    log,
    node_view,
    summary,
    undeploy,
    verdict,
    warm,
)


def _replica_ids(app: str, deployments: list[str]) -> dict[str, list[str]]:
    return {d: [str(r["replica_id"]) for r in faults.running(app, d)] for d in deployments}


def _back_after(samples: list[tuple[float, Any]], dep: str, killed: dict[str, Any], n: int) -> Any:
    """Seconds from a kill until ``dep`` had ``n`` running replicas again, none of them the
    one killed (from the sampler's readings); None when it never did."""
    for t, value in samples:
        if t < killed["at"] or not isinstance(value, dict) or dep not in value:
            continue
        ids = value[dep]
        if len(ids) >= n and str(killed["replica_id"]) not in ids:
            return round(t - killed["at"], 1)
    return None


def kill_each_kind(spec: dict[str, Any]) -> dict[str, Any]:
    """Scenario 1: one replica of each node kind SIGKILLed in turn (2 replicas each)."""
    app, seconds, conc = "chaos_kinds", spec["seconds"], spec["concurrency"]
    deployments = list(apps.KIND_DEPLOYMENTS.values())
    target = deploy(apps.kinds(os.path.join(h.private_dir(), "state1")), app)
    warm(target, conc)
    before = _replica_ids(app, deployments)
    lead = max(LEAD_MIN_S, 0.2 * seconds)
    gap = (0.75 * seconds - lead) / len(deployments)
    schedule = [
        (lead + i * gap, f"kill {kind} replica ({dep})", lambda d=dep: faults.kill_replica(app, d))
        for i, (kind, dep) in enumerate(apps.KIND_DEPLOYMENTS.items())
    ]
    with Sampler(lambda: _replica_ids(app, deployments), every_s=0.5) as sampler:
        records, done, t0 = drive(target, conc, seconds, schedule)
        faults.wait_for(
            lambda: all(len(v) >= 2 for v in _replica_ids(app, deployments).values()), 90, 1.0
        )
        time.sleep(1)
    kills = []
    for f in done:
        row = {k: f.get(k) for k in ("name", "t_s", "replica_id", "pid", "error")}
        if "error" not in f:
            row["replaced_after_s"] = _back_after(sampler.samples, f["deployment"], f, 2)
        kills.append(row)
    s = summary(records, fault_times(done), t0)
    undeploy(app)
    faults.drop_state_actor(app, "split")
    return {
        "target": "0 failed requests",
        "verdict": verdict(s["failed"] == 0 and len(fault_times(done)) == len(deployments)),
        "predict": s,
        "faults": kills,
        "observed": {"replicas_before": before, "served_by": analysis.served_counts(records)},
    }


def kill_ingress(spec: dict[str, Any]) -> dict[str, Any]:
    """Scenario 2: one of two ingress replicas SIGKILLed."""
    app, seconds, conc = "chaos_ingress", spec["seconds"], spec["concurrency"]
    target = deploy(apps.ingress(2), app)
    warm(target, conc)
    before = _replica_ids(app, ["ingress"])
    lead = max(LEAD_MIN_S, 0.25 * seconds)
    schedule = [(lead, "kill ingress replica", lambda: faults.kill_replica(app, "ingress"))]
    with Sampler(lambda: _replica_ids(app, ["ingress"]), every_s=0.5) as sampler:
        records, done, t0 = drive(target, conc, seconds, schedule)
        faults.wait_for(lambda: len(_replica_ids(app, ["ingress"])["ingress"]) >= 2, 90, 1.0)
        time.sleep(1)
    s = summary(records, fault_times(done), t0)
    kill = {k: done[0].get(k) for k in ("name", "t_s", "replica_id", "pid", "error")}
    if "error" not in done[0]:
        kill["replaced_after_s"] = _back_after(sampler.samples, "ingress", done[0], 2)
    undeploy(app)
    ok = bool(fault_times(done)) and s["failed_pct"] <= 0.1
    ok = ok and s["failures_after_fault_plus_5s"] == 0
    return {
        "target": "failed <= 0.1 %, none after T+5 s",
        "verdict": verdict(ok),
        "predict": s,
        "faults": [kill],
        "observed": {"replicas_before": before},
    }


def _healthy_path(r: Any) -> bool:
    """Served by the ``healthy`` arm as the router's choice (not as the fallback)."""
    return r.served_by == ["split", "healthy"] and not (r.notes or {}).get("split")


def _fell_back(r: Any) -> bool:
    return bool(((r.notes or {}).get("split") or {}).get("fallback"))


def _resilience(app: str) -> dict[str, Any]:
    return dict(node_view(graph_view(app), "split").get("resilience", {}))


def _opened_after(samples: list[tuple[float, Any]], fault_at: float) -> float | None:
    """Seconds from the fault until ``/graph`` first showed hangy's breaker open."""
    for t, v in samples:
        hangy = (v.get("breakers") or {}).get("hangy") or {}
        if t >= fault_at and (hangy.get("state") == "open" or int(hangy.get("opened", 0)) > 0):
            return round(t - fault_at, 1)
    return None


def _named(r: Any) -> str:
    parts = (r.detail or "").split(" | ")
    return parts[1] if len(parts) > 1 else "?"


def hang(spec: dict[str, Any]) -> dict[str, Any]:
    """Scenario 5: the ``hangy`` arm hangs: 504 at the deadline, breaker opens, fallback
    serves; the healthy path's p95 against a run without the fault."""
    from nodes.call_spec import BreakerSpec

    app, seconds, conc = "chaos_hang", spec["seconds"], spec["concurrency"]
    control = os.path.join(h.private_dir(), "hangy.mode")
    with open(control, "w") as f:
        f.write("ok")
    target = deploy(apps.hang(control, os.path.join(h.private_dir(), "state5")), app)
    warm(target, conc)
    log(f"{app}: baseline run ({seconds:g}s, no fault)")
    base, _, _ = drive(target, conc, seconds, [])

    def hang_it() -> dict[str, Any]:
        with open(control, "w") as f:
            f.write("hang")
        return {"control": "hang"}

    lead = max(LEAD_MIN_S, 0.2 * seconds)
    with Sampler(lambda: _resilience(app), every_s=1.0) as sampled:
        records, done, t0 = drive(target, conc, seconds, [(lead, "hangy hangs", hang_it)])
    at_end = _resilience(app)
    with open(control, "w") as f:
        f.write("ok")
    open_s = BreakerSpec(**apps.BREAKER).open_s
    log(f"{app}: hangy answers again; {open_s + 5:g}s of load at c=2 for the probes")
    recovery, _, _ = drive(target, 2, open_s + 5, [])
    after = _resilience(app)
    undeploy(app)
    faults.drop_state_actor(app, "split")

    s = summary(records, fault_times(done), t0)
    fault_at = fault_times(done)[0] if fault_times(done) else t0
    timeouts = [r for r in records if r.status == 504]
    took = [r.end - r.start for r in timeouts]
    base_p95 = analysis.pct(analysis.latencies_ms(base, _healthy_path), 0.95)
    during = [r for r in records if r.start >= fault_at]
    fault_p95 = analysis.pct(analysis.latencies_ms(during, _healthy_path), 0.95)
    ratio = fault_p95 / base_p95 if fault_p95 and base_p95 else None
    fallbacks = sum(1 for r in records if r.ok and _fell_back(r))
    named = Counter(_named(r) for r in timeouts)
    at_deadline = bool(took) and all(
        apps.HANG_DEADLINE_S - 0.15 <= t <= apps.HANG_DEADLINE_S + 1.0 for t in took
    )
    opened_after = _opened_after(sampled.samples, fault_at)
    tail = recovery[len(recovery) // 2 :]
    checks = {
        "504s at the deadline": at_deadline,
        "every 504 names the hung node (hangy)": bool(timeouts) and set(named) == {"hangy"},
        "breaker opened": opened_after is not None,
        "fallback served": fallbacks > 0,
        "healthy p95 <= 1.2x baseline": ratio is not None and ratio <= 1.2,
    }
    return {
        "target": "504 at the deadline, breaker opens, fallback serves, healthy p95 <= 1.2x",
        "verdict": verdict(all(checks.values())),
        "checks": checks,
        "predict": s,
        "baseline": summary(base, [], base[0].start if base else t0),
        "faults": [{k: f.get(k) for k in ("name", "t_s", "error")} for f in done],
        "observed": {
            "deadline_s": apps.HANG_DEADLINE_S,
            "breaker": BreakerSpec(**apps.BREAKER).model_dump(),
            "504s_by_node_named": dict(named),
            "504_took_s": [round(min(took), 3), round(max(took), 3)] if took else None,
            "504s_after_fault_s": [
                round(min(r.start for r in timeouts) - fault_at, 2),
                round(max(r.start for r in timeouts) - fault_at, 2),
            ]
            if timeouts
            else None,
            "breaker_open_after_fault_s": opened_after,
            "fallback_answers": fallbacks,
            "healthy_p95_ms_baseline": base_p95 and round(base_p95, 2),
            "healthy_p95_ms_fault": fault_p95 and round(fault_p95, 2),
            "healthy_p95_ratio": ratio and round(ratio, 3),
            "healthy_path_requests": [
                len(analysis.latencies_ms(base, _healthy_path)),
                len(analysis.latencies_ms(during, _healthy_path)),
            ],
            "resilience_at_end_of_fault": at_end,
            "recovery_run": {
                "sent": len(recovery),
                "failed": sum(1 for r in recovery if not r.ok),
                "served_by_second_half": analysis.served_counts(tail),
            },
            "resilience_after_recovery": after,
        },
    }
