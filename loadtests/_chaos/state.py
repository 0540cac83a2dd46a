"""Scenarios 3, 6 and 7: a bandit router's state holder killed, its folder full or read-only,
its snapshot truncated, while clients predict and reward every answer.

"Nothing learned lost" is checked by bookkeeping: between a reading of the router's state
(``GET /<graph>/graph``) before the load and one after it, the bandit's reward counts must grow
by exactly the rewards the client had acknowledged (200 from ``/feedback``), and the router's
request counts by exactly the predictions answered 200. Fewer: lost; more: applied twice.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import _harness as h

from . import apps, faults
from .client import Rec
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

#: The router of each scenario (distinct names: the replicas' log lines name the router only).
ROUTERS = {
    "chaos_bandit": "bandit_kill",
    "chaos_statefs": "bandit_fs",
    "chaos_snapshot": "bandit_snap",
}
ARMS = ("good", "bad")
#: Wait for the router replicas' figures to reach the state holder (sync_interval_s 0.5).
SETTLE_S = 3.0


def learned(app: str) -> dict[str, Any]:
    """The router's shared state as ``/graph`` shows it: requests and reward counts by arm,
    and what the state holder says about its own health."""
    state = node_view(graph_view(app), ROUTERS[app]).get("state", {})
    counts = (state.get("bandit") or {}).get("counts")
    out: dict[str, Any] = {
        "requests": state.get("requests"),
        "rewards": dict(zip(state.get("arms", ARMS), counts)) if counts else None,
    }
    for key in ("recovery", "snapshot_failures", "log_failures", "duplicate_deltas", "error"):
        if key in state:
            out[key] = state[key]
    return out


def acknowledged(records: Sequence[Rec]) -> dict[str, dict[str, int]]:
    """What the client was told: 200 predictions and 200 rewards, by arm."""
    out: dict[str, Counter[str]] = {"requests": Counter(), "rewards": Counter()}
    for r in records:
        if r.ok and r.served_by:
            out["requests" if r.kind == "predict" else "rewards"][r.served_by[-1]] += 1
    return {k: {arm: v.get(arm, 0) for arm in ARMS} for k, v in out.items()}


def bookkeeping(before: dict[str, Any], after: dict[str, Any], records: Sequence[Rec]) -> Any:
    """Per figure and arm: acknowledged by the client, gained by the state, and the difference
    (``lost`` > 0: acknowledged but missing; < 0: counted more often than acknowledged)."""
    acked = acknowledged(records)
    out: dict[str, Any] = {}
    for figure in ("requests", "rewards"):
        rows = {}
        for arm in ARMS:
            if after.get(figure) is None or before.get(figure) is None:
                gained = None  # the state holder did not answer
            else:
                gained = after[figure].get(arm, 0) - before[figure].get(arm, 0)
            lost = None if gained is None else round(acked[figure][arm] - gained, 3)
            rows[arm] = {"acknowledged": acked[figure][arm], "gained": gained, "lost": lost}
        out[figure] = rows
    return out


def nothing_lost(book: dict[str, Any]) -> bool:
    return all(row["lost"] == 0 for rows in book.values() for row in rows.values())


def _setup(app: str, state_dir: str, conc: int) -> tuple[str, dict[str, Any]]:
    target = deploy(apps.bandit(app, ROUTERS[app], state_dir), app)
    warm(target, conc, feedback=apps.reward)
    time.sleep(SETTLE_S)
    return target, learned(app)


def _actor_probe(app: str) -> Any:
    return lambda: faults.state_actor(app, ROUTERS[app])


def _restarted_after(samples: list[tuple[float, Any]], killed: dict[str, Any]) -> Any:
    """Seconds from the kill until the actor was alive in a new process (sampler readings)."""
    for t, v in samples:
        if t >= killed["at"] and v.get("state") == "ALIVE" and v.get("pid") != killed["pid"]:
            return round(t - killed["at"], 2)
    return None


def _finish(app: str) -> dict[str, Any]:
    time.sleep(SETTLE_S)
    after = learned(app)
    return after


def _logs(app: str, *more: str) -> list[str]:
    """What the state holder and the router replicas logged about this router."""
    router = ROUTERS[app]
    return faults.log_lines([f"router {app}.{router}", f"router {router}:", *more])


def kill_state_actor(spec: dict[str, Any]) -> dict[str, Any]:
    """Scenario 3: the router's state actor SIGKILLed during a bandit run."""
    app, seconds, conc = "chaos_bandit", spec["seconds"], spec["concurrency"]
    target, before = _setup(app, os.path.join(h.private_dir(), "state3"), conc)
    lead = max(LEAD_MIN_S, 0.3 * seconds)
    schedule = [(lead, "kill state actor", lambda: faults.kill_state_actor(app, ROUTERS[app]))]
    with Sampler(_actor_probe(app), every_s=0.2) as sampler:
        records, done, t0 = drive(target, conc, seconds, schedule, feedback=apps.reward)
    after = _finish(app)
    book = bookkeeping(before, after, records)
    kill = dict(done[0])
    restarted = None if "error" in kill else _restarted_after(sampler.samples, kill)
    times = fault_times(done)
    p, fb = summary(records, times, t0), summary(records, times, t0, kind="feedback")
    undeploy(app)
    faults.drop_state_actor(app, ROUTERS[app])
    ok = bool(times) and p["failed"] == 0 and fb["failed"] == 0 and nothing_lost(book)
    return {
        "target": "0 failed requests (predict and feedback), nothing learned lost",
        "verdict": verdict(ok),
        "predict": p,
        "feedback": fb,
        "faults": [{k: kill.get(k) for k in ("name", "t_s", "pid", "restarts", "error")}],
        "observed": {
            "actor_back_in_new_process_after_s": restarted,
            "state_before": before,
            "state_after": after,
            "bookkeeping": book,
            "log_lines": _logs(app),
            "server_log_of_failed": faults.error_id_lines(
                fb.get("failures", []) + p.get("failures", [])
            ),
        },
    }


def state_folder_fails(spec: dict[str, Any]) -> dict[str, Any]:
    """Scenario 6: the state folder (a tiny tmpfs) fills up, recovers, turns read-only,
    recovers, during a bandit run."""
    app, seconds, conc = "chaos_statefs", spec["seconds"], spec["concurrency"]
    volume = faults.StateVolume(os.path.join(h.private_dir(), "state6"))
    refused = volume.mount()
    if refused is not None:
        return {
            "target": "serving continues, failure visible, state catches up",
            "verdict": "SKIPPED",
            "skipped": f"cannot mount a tmpfs for the state folder: {refused}",
        }
    app_folder = os.path.join(volume.path, app)
    seen: dict[str, Any] = {}

    def restore(tag: str) -> Any:
        def run() -> dict[str, Any]:
            seen[f"state_during_{tag}"] = learned(app)  # before it is restored: visible?
            volume.restore()
            seen[f"restored_{tag}_wall"] = time.time()
            return {"state_during": seen[f"state_during_{tag}"]}

        return run

    def fill() -> dict[str, Any]:
        return {"filler_bytes": volume.fill()}

    def read_only() -> dict[str, Any]:
        return {"mode": volume.read_only(app_folder)}

    try:
        target, before = _setup(app, volume.path, conc)
        s = seconds
        schedule = [
            (max(LEAD_MIN_S, 0.2 * s), "folder full", fill),
            (0.4 * s, "folder writable again", restore("full")),
            (0.55 * s, "folder read-only", read_only),
            (0.75 * s, "folder writable again", restore("read_only")),
        ]
        records, done, t0 = drive(target, conc, seconds, schedule, feedback=apps.reward)
        after = _finish(app)
        snapshot = _snapshot_info(os.path.join(app_folder, f"{ROUTERS[app]}.json"))
    finally:
        undeploy(app)
        faults.drop_state_actor(app, ROUTERS[app])
        volume.unmount()
    book = bookkeeping(before, after, records)
    times = fault_times(done, ["folder full", "folder read-only"])
    p, fb = summary(records, times, t0), summary(records, times, t0, kind="feedback")
    during = [seen.get("state_during_full", {}), seen.get("state_during_read_only", {})]
    visible = any(
        (d.get("log_failures") or 0) + (d.get("snapshot_failures") or 0) > 0 or "error" in d
        for d in during
    )
    restored = seen.get("restored_read_only_wall")
    caught_up = nothing_lost(book) and bool(
        snapshot.get("saved_at") and restored and snapshot["saved_at"] > restored
    )
    checks = {
        "serving continues (0 failed predicts)": p["failed"] == 0,
        "failure visible in /graph": visible,
        "state caught up (nothing lost, snapshot written after recovery)": caught_up,
    }
    return {
        "target": "serving continues, failure visible, state catches up",
        "verdict": verdict(len(times) == 2 and all(checks.values())),
        "checks": checks,
        "predict": p,
        "feedback": fb,
        "faults": [
            {k: f.get(k) for k in ("name", "t_s", "filler_bytes", "mode", "error")} for f in done
        ],
        "observed": {
            "state_before": before,
            "state_during_full": seen.get("state_during_full"),
            "state_during_read_only": seen.get("state_during_read_only"),
            "state_after": after,
            "snapshot_after": snapshot,
            "bookkeeping": book,
            "log_lines": _logs(app),
            "server_log_of_failed": faults.error_id_lines(
                fb.get("failures", []) + p.get("failures", [])
            ),
        },
    }


def _snapshot_info(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as exc:
        return {"error": repr(exc)[:200]}
    return {"saved_at": saved.get("saved_at"), "seq": saved.get("seq")}


def truncated_snapshot(spec: dict[str, Any]) -> dict[str, Any]:
    """Scenario 7: the snapshot is cut in half, then the state actor is SIGKILLed: the actor
    Ray restarts loads the damaged snapshot."""
    import ray

    app, seconds, conc = "chaos_snapshot", spec["seconds"], spec["concurrency"]
    state_dir = os.path.join(h.private_dir(), "state7")
    target, before = _setup(app, state_dir, conc)
    path = os.path.join(state_dir, app, f"{ROUTERS[app]}.json")

    def damage() -> dict[str, Any]:
        actor = ray.get_actor(f"{app}.{ROUTERS[app]}", namespace=faults.STATE_NAMESPACE)
        ray.get(actor.flush.remote(), timeout=30)  # a snapshot with what was learned so far
        cut = faults.truncate(path)
        killed = faults.kill_state_actor(app, ROUTERS[app])
        return {**cut, **killed}

    lead = max(LEAD_MIN_S, 0.4 * seconds)
    with Sampler(_actor_probe(app), every_s=0.25) as sampler:
        records, done, t0 = drive(
            target, conc, seconds, [(lead, "truncate + kill", damage)], feedback=apps.reward
        )
    after = _finish(app)
    kill = dict(done[0])
    restarted = None if "error" in kill else _restarted_after(sampler.samples, kill)
    last = sampler.samples[-1][1] if sampler.samples else {}
    book = bookkeeping(before, after, records)
    times = fault_times(done)
    p, fb = summary(records, times, t0), summary(records, times, t0, kind="feedback")
    lines = _logs(app, "JSONDecodeError")
    undeploy(app)
    faults.drop_state_actor(app, ROUTERS[app])
    said = str((after.get("recovery") or {}).get("lost", ""))
    kept = all(
        row["lost"] is not None and row["lost"] <= 0 for rs in book.values() for row in rs.values()
    )
    checks = {
        "actor starts": restarted is not None and last.get("state") == "ALIVE",
        "recovery reported in /graph": bool(after.get("recovery")),
        "what it says it lost matches the bookkeeping": said.startswith("nothing") == kept,
        "0 failed predicts": p["failed"] == 0,
    }
    log(f"{app}: checks {checks}")
    return {
        "target": "the actor starts, recovers, and says what it lost",
        "verdict": verdict(bool(times) and all(checks.values())),
        "checks": checks,
        "predict": p,
        "feedback": fb,
        "faults": [
            {k: kill.get(k) for k in ("name", "t_s", "bytes_before", "bytes_after", "pid", "error")}
        ],
        "observed": {
            "actor_back_in_new_process_after_s": restarted,
            "actor_at_end": last,
            "state_before": before,
            "state_after": after,
            "bookkeeping": book,
            "log_lines": lines,
            "server_log_of_failed": faults.error_id_lines(
                fb.get("failures", []) + p.get("failures", [])
            ),
        },
    }
