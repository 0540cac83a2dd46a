"""Autoscaling policies in simulation: ours against Ray Serve's default policy, as shipped and
as a careful user tunes it, four load traces, two kinds of node.

No Ray: :mod:`autoscale.simulator` replays step, spike, ramp and diurnal traces (20 -> 100
req/s, 10 simulated minutes each, 2 s replica startup) through one node scaled by each policy,
with the same arrivals and service times for all. Two nodes: one that computes (50 ms
lognormal, one request at a time per replica, SLO 250 ms) and one that waits (100 ms, two at
once per replica, as in the live run; SLO 400 ms). Prints a markdown table and writes
``reports/autoscale_sim.md``, plus one PNG per trace and node (rate, replicas and p95 over time
for every policy).

    python loadtests/autoscale_sim.py [--seed 0] [--duration 600] [--decision-period 0.5]
        [--other-seeds 4]

The report also runs the same checks with ``--other-seeds`` more seeds (arrivals and service
times drawn anew) and says how many pass with each: one seed's pass can be luck.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any

import _harness as h
from _harness import plots

from autoscale import SimConfig, SimResult, compare, default_settings, tuned_ray_config

COLORS = {"ours": "tab:blue", "ray_default": "tab:orange", "ray_tuned": "tab:green"}
LABELS = {"ours": "ours (decide)", "ray_default": "Ray Serve default", "ray_tuned": "Ray tuned"}
#: The two nodes: (name, what it is, its simulation).
KINDS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("compute", "computes: 50 ms, one at a time per replica, SLO 250 ms", {}),
    (
        "wait",
        "waits: 100 ms, two at once per replica, SLO 400 ms",
        {"slots": 2, "service_time_ms": 100.0, "slo_p95_ms": 400.0},
    ),
)


def table(results: list[SimResult]) -> str:
    lines = [
        "| trace | policy | SLO attainment % | replica-seconds | time to first scale-up s "
        "| reversals |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        first = "-" if r.time_to_first_scale_up_s is None else f"{r.time_to_first_scale_up_s:.1f}"
        lines.append(
            f"| {r.trace} | {r.policy} | {r.slo_attainment:.1f} | {r.replica_seconds:.0f} "
            f"| {first} | {r.reversals} |"
        )
    return "\n".join(lines)


def verdict(results: list[SimResult]) -> list[str]:
    """Acceptance per trace: higher SLO attainment than each Ray policy at no more of its
    replica-seconds; reversals at most the default's + 2 (the diurnal trace's two cycles
    take three to follow)."""
    by = {(r.trace, r.policy): r for r in results}
    out = []
    for trace in dict.fromkeys(r.trace for r in results):
        ours = by[(trace, "ours")]
        for base in ("ray_default", "ray_tuned"):
            other = by[(trace, base)]
            ok = ours.slo_attainment > other.slo_attainment and (
                ours.replica_seconds <= other.replica_seconds
            )
            out.append(
                f"- {trace} vs {base}: {'PASS' if ok else 'FAIL'} — SLO attainment "
                f"{ours.slo_attainment:.1f}% vs {other.slo_attainment:.1f}%, replica-seconds "
                f"{ours.replica_seconds:.0f} vs {other.replica_seconds:.0f} "
                f"({ours.replica_seconds / other.replica_seconds:.2f}x)"
            )
        most = 3 if trace == "diurnal" else by[(trace, "ray_default")].reversals + 2
        ok = ours.reversals <= most
        out.append(
            f"- {trace} reversals: {'PASS' if ok else 'FAIL'} — {ours.reversals} (at most {most})"
        )
    return out


def _config(args: Any, overrides: dict[str, Any]) -> SimConfig:
    """The simulated node of one of :data:`KINDS` at the run's duration and decision period."""
    cfg = SimConfig(duration_s=args.duration, decision_period_s=args.decision_period)
    return dataclasses.replace(cfg, **overrides)


def other_seeds(args: Any) -> tuple[list[str], int]:
    """The checks with each of ``args.other_seeds`` seeds after ``args.seed``: report lines
    and the runs made."""
    lines = [
        "| seed | checks passed | failed |",
        "|---:|---:|---|",
    ]
    runs = 0
    for seed in range(args.seed + 1, args.seed + 1 + args.other_seeds):
        checks, failed = 0, []
        for kind, _, overrides in KINDS:
            cfg = _config(args, overrides)
            results = compare(config=cfg, settings=default_settings(cfg), seed=seed)
            runs += len(results)
            for line in verdict(results):  # "- step vs ray_tuned: FAIL — ..."
                checks += 1
                if "FAIL" in line:
                    failed.append(f"{kind} node: {line[2:].split(':')[0]}")
        passed = checks - len(failed)
        lines.append(f"| {seed} | {passed} of {checks} | {', '.join(failed) or '-'} |")
    return lines, runs


def plot(trace: str, runs: list[SimResult], slo_ms: float, path: str) -> None:
    plt = plots.pyplot()
    fig, (ax_rate, ax_rep, ax_p95) = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    ax_rate.plot(runs[0].t, runs[0].rate, color="black")
    ax_rate.set_ylabel("arrival rate (req/s)")
    ax_rate.set_title(f"{trace} trace: ours vs Ray Serve's default policy, default and tuned")
    for r in runs:
        ax_rep.step(r.t, r.replicas, where="post", color=COLORS[r.policy], label=LABELS[r.policy])
        ax_p95.plot(r.t, r.p95_ms, color=COLORS[r.policy], lw=0.8, label=LABELS[r.policy])
    ax_rep.set_ylabel("replicas")
    ax_rep.legend(loc="upper right")
    ax_p95.axhline(slo_ms, color="red", ls="--", lw=1, label=f"SLO p95 {slo_ms:.0f} ms")
    ax_p95.set_yscale("log")
    ax_p95.set_ylabel("p95 latency per 1 s (ms)")
    ax_p95.set_xlabel("time (s)")
    ax_p95.legend(loc="upper right")
    plots.save(fig, path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__, worker=False)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duration", type=float, default=600.0, help="simulated seconds")
    parser.add_argument("--decision-period", type=float, default=0.5, help="seconds")
    parser.add_argument("--other-seeds", type=int, default=4, help="seeds checked besides --seed")
    args = parser.parse_args(argv)

    os.makedirs(args.reports_dir, exist_ok=True)
    sections: list[str] = []
    checks: dict[str, list[str]] = {}
    started = time.process_time()
    runs = 0
    for kind, what, overrides in KINDS:
        cfg = _config(args, overrides)
        settings = default_settings(cfg)
        results = compare(config=cfg, settings=settings, seed=args.seed)
        runs += len(results)
        suffix = "" if kind == "compute" else f"_{kind}"
        for trace in dict.fromkeys(r.trace for r in results):
            path = os.path.join(args.reports_dir, f"autoscale_sim_{trace}{suffix}.png")
            plot(trace, [r for r in results if r.trace == trace], cfg.slo_p95_ms, path)
        checks[kind] = verdict(results)
        sections += [
            f"## The node that {what}",
            "",
            f"ours: `{settings!r}`, metrics over {cfg.metrics_window_s:g} s (rate and service "
            f"time over {cfg.rate_window_s:g} s); service time {cfg.service_time_ms:g} ms "
            f"{cfg.service_dist} (sigma {cfg.service_sigma:g}), {cfg.slots} at once per "
            f"replica. Plots: `autoscale_sim_<trace>{suffix}.png`.",
            "",
            table(results),
            "",
            "Acceptance:",
            "",
            *checks[kind],
            "",
        ]
        print(f"node that {what}")
        print(table(results))
        print("\n".join(checks[kind]) + "\n")
    seeds, more = other_seeds(args)
    runs += more
    print("\n".join(seeds))
    cpu_s = time.process_time() - started
    cfg = SimConfig()
    tuned = tuned_ray_config(default_settings(cfg))
    body = "\n".join(
        [
            "# Autoscaling simulation: ours vs Ray Serve's default policy, default and tuned",
            "",
            f"Generated by `python loadtests/autoscale_sim.py --seed {args.seed} --duration "
            f"{args.duration:g} --decision-period {args.decision_period:g}` "
            f"({runs} runs in {cpu_s:.1f} s of CPU).",
            "",
            f"One node, {cfg.startup_s:g} s replica startup, {cfg.initial_replicas} replicas "
            f"at t=0, policy asked every {args.decision_period:g} s. Traces go from 20 to 100 "
            "req/s (step at 60 s; spike 120-150 s; ramp 60-300 s; diurnal, 300 s period). "
            "SLO attainment: share of 1 s windows whose p95 is within the SLO.",
            "",
            "- ray_default: Ray Serve's default policy as shipped: target_ongoing_requests 2, "
            "upscale_delay_s 30, downscale_delay_s 600, look_back_period_s 30, metrics pushed "
            "every 10 s, same bounds as ours.",
            f"- ray_tuned: the same policy as a careful user tunes it: metrics every "
            f"{tuned.metrics_interval_s:g} s over {tuned.look_back_period_s:g} s, upscale "
            f"delay {tuned.upscale_delay_s:g} s, downscale delay "
            f"{tuned.downscale_delay_s:g} s (our downscale cooldown), target "
            f"{tuned.target_ongoing_requests:g} (ours).",
            "",
            *sections,
            f"## Other seeds: the same checks, {args.other_seeds} more draws of arrivals and "
            "service times",
            "",
            *seeds,
            "",
        ]
    )
    path = h.write_markdown("autoscale_sim", body, args.reports_dir)
    print(f"{runs} runs in {cpu_s:.1f} s of CPU; report in {path}")
    every = [line for lines in checks.values() for line in lines]
    return 0 if all("PASS" in c for c in every) else 1


if __name__ == "__main__":
    sys.exit(main())
