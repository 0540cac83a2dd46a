"""The report: the table of the runs, the PASS/FAIL checks, notes, decisions, conditions."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import _harness as h
from _harness import value as _s

from .analysis import analyse
from .plots import plot
from .scenario import (
    DOWN_WITHIN_S,
    LABELS,
    NODE,
    OURS,
    RAY_DEFAULT,
    RAY_TUNED,
    REPLICA_SECONDS_VS_TUNED,
    SAMPLE_EVERY_S,
    SLO_POINTS_OVER_DEFAULT,
    UP_WITHIN_S,
)


def report(
    raw: dict[str, Any], spec: dict[str, Any], name: str, reports_dir: str
) -> tuple[str, dict[str, Any]]:
    """The markdown and the JSON data of the runs; writes the plots to ``reports_dir``."""
    results = {run["policy"]: analyse(run, spec) for run in raw["runs"]}
    png = f"{name}.png"
    plot(results, spec, os.path.join(reports_dir, png))
    for policy in results:
        plot({policy: results[policy]}, spec, os.path.join(reports_dir, f"{name}_{policy}.png"))
    headers = ["", *[LABELS[p] for p in results]]
    runs = list(results.values())

    def row(label: str, fmt: Any) -> list[str]:
        return [label, *[fmt(a) for a in runs]]

    def after(key: str, within: float) -> Any:
        return lambda a: _s(a[key], " s") if a[key] is not None else f"none in {within:.0f} s"

    total = spec["low_s"] + spec["high_s"] + spec["tail_s"]
    rows = [
        row("replicas at the step (running)", lambda a: _s(a["running_at_step_up"])),
        row(
            "first scale-up decision (target raised) after the step",
            after("scale_up_decision_s", total - spec["low_s"]),
        ),
        row(
            "first new replica RUNNING after the step",
            after("scale_up_running_s", total - spec["low_s"]),
        ),
        row(
            "running replicas doubled (2x the count at the step) after",
            lambda a: (
                f"{_s(a['doubled_running_s'], ' s')} (to {a['doubled_to']})"
                if a["doubled_running_s"] is not None
                else f"not in the high phase (to {a['doubled_to']})"
            ),
        ),
        row(
            "high-phase peak reached (running) after",
            lambda a: (
                f"{_s(a['peak_high_running_s'], ' s')} ({a['peak_high_running']} replicas)"
                if a["peak_high_running"] > (a["running_at_step_up"] or 0)
                else "no rise in the high phase"
            ),
        ),
        row(
            "peak replicas, whole run (running / target)",
            lambda a: f"{a['peak_running']} / {a['peak_target']}",
        ),
        row("replica-seconds (running, whole run)", lambda a: _s(a["replica_seconds"])),
        row(
            "p50 / p95 latency, high phase",
            lambda a: f"{_s(a['p50_high_ms'], ' ms', 0)} / {_s(a['p95_high_ms'], ' ms', 0)}",
        ),
        row("throughput, high phase", lambda a: _s(a["rps_high"], " req/s")),
        row(
            f"1-s windows with p95 <= {spec['slo_ms']:.0f} ms, whole run",
            lambda a: _s(a["slo_attainment_pct"], " %"),
        ),
        row(
            f"1-s windows with p95 <= {spec['slo_ms']:.0f} ms, high phase",
            lambda a: _s(a["slo_attainment_high_pct"], " %"),
        ),
        row(
            "first scale-down decision after the step-down",
            after("scale_down_decision_s", spec["tail_s"]),
        ),
        row(
            "replicas fall (running) after the step-down",
            after("scale_down_running_s", spec["tail_s"]),
        ),
        row(
            "replicas at the step-down / at the end",
            lambda a: f"{a['running_at_step_down']} / {a['running_at_end']}",
        ),
        row("requests (failed)", lambda a: f"{a['requests']} ({a['errors']})"),
    ]
    checks = []
    ours, ray_ = results.get("ours"), results.get("ray_default")
    if ours is not None:
        # A scale-up is credited to the step once the running replicas have doubled: a first
        # +1 right after the step can come from a decision the low load already made.
        up = ours["doubled_running_s"]
        checks.append(
            (
                f"ours scales up within {UP_WITHIN_S:.0f} s of the step (running replicas doubled)",
                up is not None and up <= UP_WITHIN_S,
                f"{_s(up, ' s')} to {ours['doubled_to']} replicas (first decision after "
                f"{_s(ours['scale_up_decision_s'], ' s')}, first new replica running after "
                f"{_s(ours['scale_up_running_s'], ' s')})",
            )
        )
        dn = ours["scale_down_running_s"]
        checks.append(
            (
                f"ours scales down within {DOWN_WITHIN_S:.0f} s after the load drops",
                dn is not None and dn <= DOWN_WITHIN_S,
                f"{_s(dn, ' s')} ({ours['running_at_step_down']} -> "
                f"{ours['running_at_end']} replicas by the end)"
                if dn is not None
                else f"no fall within the {spec['tail_s']:.0f} s tail",
            )
        )
    if ours is not None:
        # 2 users on a node that serves max_ongoing at once: one replica holds them all.
        need = -(-spec["low_users"] // spec["max_ongoing"])
        rest = (ours["running_at_step_up"], ours["running_at_end"])
        checks.append(
            (
                f"ours rests at what the low load needs ({need} replica(s) for "
                f"{spec['low_users']} users): at the step and at the end",
                rest == (need, need),
                f"{rest[0]} and {rest[1]}",
            )
        )
    tuned = results.get("ray_tuned")
    for base, other in (("ray_default", ray_), ("ray_tuned", tuned)):
        if ours is None or other is None:
            continue
        a, b = ours["slo_attainment_pct"], other["slo_attainment_pct"]
        rs_a, rs_b = ours["replica_seconds"], other["replica_seconds"]
        points = SLO_POINTS_OVER_DEFAULT if base == "ray_default" else 0.0
        most = 1.0 if base == "ray_default" else REPLICA_SECONDS_VS_TUNED
        known = None not in (a, b, rs_a, rs_b) and rs_b > 0
        checks.append(
            (
                f"ours meets the SLO in more 1-s windows than {LABELS[base]} (by > "
                f"{points:.0f} points) at <= {most:.1f}x its replica-seconds (whole run)",
                known and a - b > points and rs_a <= most * rs_b,
                f"{_s(a, ' %')} vs {_s(b, ' %')}; {_s(rs_a)} vs {_s(rs_b)} replica-seconds"
                + (f" ({rs_a / rs_b:.2f}x)" if known else ""),
            )
        )
    verdicts = [
        f"- **{'PASS' if ok else 'FAIL'}**: {what}: {detail}" for what, ok, detail in checks
    ]

    notes = []
    if ours is not None and ray_ is not None:
        notes.append(
            "- Ours sizes a node for its arrival rate, `ceil(rate * service_time / "
            "target_utilisation)`, where a replica's service time is what one request costs it "
            "when full, by Little's law: the latency at `max_ongoing_requests` requests at once "
            "over that number, from a fit of latency against the requests each replica held "
            "(`autoscale/stats.py`). This node sleeps, its latency is flat: two fit in the time "
            "of one. Sizing by rate happens only while requests wait for a replica: "
            f"{spec['low_users']} users who wait for their answers keep one replica full "
            "without a queue, and a replica more would idle; where the headroom rules keep "
            "one replica too many and nothing waited for a whole cooldown, ours tries one "
            "fewer (`down:probe`) and goes back up, for a while, if requests then queue."
        )
        up_ray = ray_["scale_up_decision_s"]
        notes.append(
            "- Ray's default raises its target "
            + (
                f"{up_ray:.0f} s after the step"
                + (
                    " (after the load dropped)"
                    if up_ray > ray_["t_step_down_s"] - ray_["t_step_up_s"]
                    else ""
                )
                if up_ray is not None
                else "not at all during the run"
            )
            + ": replicas push metrics every 10 s, averaged over 30 s, and a scale-up must be "
            "wanted for 30 s (`upscale_delay_s`); a scale-down for 600 s."
        )
        capacity = 1000.0 * spec["max_ongoing"] / spec["service_ms"]
        notes.append(
            f"- One replica could serve {capacity:.0f} req/s; with "
            f"{spec['high_users']} users queued at the ingress the run with Ray's default "
            f"delivers {ray_['rps_high']:.0f} req/s in the high phase: while the replica is "
            "full, Serve's router retries with a back-off (README, bench_batching), so a "
            "saturated node serves less than its capacity until replicas are added."
        )

    decisions = []
    for run in raw["runs"]:
        t0 = float(run["phases"].get("t0") or 0.0)
        for ts, line in run["controller_log"]["decisions"]:
            msg = re.sub(r".*?((Up|Down)scaling .*)", r"\1", line)
            when = f"{ts - t0:+.1f} s" if ts else "?"
            decisions.append(f"| {run['policy']} | {when} | {msg} |")
    errors = [e for run in raw["runs"] for e in run["controller_log"]["errors"]]
    cpu = {run["policy"]: run["cpu"] for run in raw["runs"]}
    exit_codes = {run["policy"]: run["exit_code"] for run in raw["runs"]}

    lines = [
        f"# Live autoscaling under a step load{' (quick)' if spec['quick'] else ''}",
        "",
        f"Measured {raw.get('measured_at') or h.now()} with `python loadtests/autoscale_live.py"
        f"{' --quick' if spec['quick'] else ''}` on a private local Ray cluster (Ray "
        f"{raw['machine'].get('ray')}, `graphs.cluster.start`, token auth, "
        "`graphs.cluster.RECOMMENDED_ENV`, Serve on 127.0.0.1:8100).",
        "",
        f"Graph: ingress -> one python-runtime model node `{NODE}` that sleeps "
        f"{spec['service_ms']:.0f} ms per request (`num_cpus: 0`, `max_ongoing_requests: "
        f"{spec['max_ongoing']}`: one replica serves at most "
        f"{1000 * spec['max_ongoing'] / spec['service_ms']:.0f} req/s). Load: `locust -f "
        f"loadtests/locust_step.py --headless` (closed loop, no think time) with "
        f"{spec['low_users']} users for {spec['low_s']:.0f} s, {spec['high_users']} users for "
        f"{spec['high_s']:.0f} s, {spec['low_users']} users for {spec['tail_s']:.0f} s. The runs "
        "share one cluster, one after the other, each on a fresh application.",
        "",
        f"- **{LABELS['ours']}** (`autoscaling:` of the node): "
        f"`{json.dumps({**OURS, 'slo_p95_ms': spec['slo_ms']})}`",
        f"- **{LABELS['ray_default']}** (`autoscaling_config:` of the node): "
        f"`{json.dumps(RAY_DEFAULT)}`; Ray's defaults otherwise (upscale delay 30 s, downscale "
        "delay 600 s, metrics every 10 s averaged over 30 s)",
        f"- **{LABELS['ray_tuned']}** (`autoscaling_config:` of the node): "
        f"`{json.dumps(RAY_TUNED)}`: as a careful user tunes it (metrics every 0.5 s over 2 s, "
        "upscale delay 3 s, downscale delay matched to ours' cooldown)",
        "",
        "Times are seconds after the step (up: the users jump; down: they drop back); replicas "
        f"sampled every {SAMPLE_EVERY_S} s from the driver (`serve.status()` replica states; "
        "target = `target_num_replicas` of the controller's instance details, as the REST API "
        "reports it). Latency is locust's end-to-end time per request; 1-s windows by "
        "completion time.",
        "",
        h.md_table(headers, rows),
        "",
        *verdicts,
        "",
        *(["## Reading the figures", "", *notes, ""] if notes else []),
        f"![latency, throughput and replicas over time]({png})",
        "",
        "Per policy: " + ", ".join(f"[{LABELS[p]}]({name}_{p}.png)" for p in results),
        "",
        "## Scaling decisions (Serve controller log)",
        "",
        "| run | time after the load started | decision |",
        "|---|---|---|",
        *(decisions or ["| - | - | none logged |"]),
        "",
    ]
    if errors:
        lines += ["## Policy errors in the controller log", "", "```", *errors[:5], "```", ""]
    lines += [
        "## Conditions",
        "",
        f"Locust exit codes {exit_codes} (0: no failed request). CPU while each run's load ran "
        f"(cores; `foreign` is everything outside this benchmark's process tree, e.g. another "
        f"cluster on the machine): {json.dumps(cpu)}. Machine: {json.dumps(raw['machine'])}.",
    ]
    data = {
        "spec": spec,
        "machine": raw["machine"],
        "checks": [{"check": w, "pass": ok, "detail": d} for w, ok, d in checks],
        "results": results,
        "runs": [
            {k: v for k, v in run.items() if k not in ("requests", "samples")}
            for run in raw["runs"]
        ],
    }
    return "\n".join(lines), data
