"""The report: per-node table, the order of the scale-ups, the PASS/FAIL checks, the policy's
decisions, conditions."""

from __future__ import annotations

import json
import os
from typing import Any

import _harness as h
from _harness import value as _s

from .analysis import analyse
from .plots import plot
from .scenario import (
    ANTICIPATION,
    APP,
    GRAPH_POLICY,
    NODES,
    RATE_REASONS,
    SAMPLE_EVERY_S,
    WAITING,
    nodes,
)


def _grown(d: dict[str, Any], step: float) -> str:
    """One scale-up of a node while a node downstream of it was saturated, with their state."""
    state = ", ".join(
        f"{m}: {v['running']} running / {v['target']} target, {v['ongoing']} in flight, "
        f"{_s(v['waiting'], '', 1)} waiting, load ratio {v['load_ratio']}"
        for m, v in d["downstream"].items()
    )
    return (
        f"{d['node']} {d['from']} -> {d['to']} at {d['t'] - step:+.1f} s ({d['reason']}) "
        f"while {d['saturated']} saturated ({state})"
    )


def _checks(a: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The issue's three claims, judged from the decisions and the samples."""
    ns = a["nodes"]
    checks = []
    # 1. The bottleneck scales first.
    slow = ns["slow"]["first_up_s"]
    others = {n: ns[n]["first_up_s"] for n in NODES if n != "slow"}
    earlier = {n: t for n, t in others.items() if t is not None and slow is not None and t <= slow}
    ok = slow is not None and not earlier
    checks.append(
        (
            "the bottleneck `slow` scales up first",
            ok,
            "first scale-up decisions after the step: "
            + ", ".join(
                f"{n} {_s(ns[n]['first_up_s'], ' s', 2)}"
                + (f" ({ns[n]['first_up_reason']})" if ns[n]["first_up_reason"] else "")
                for n in NODES
            )
            + (f"; at or before slow's: {sorted(earlier)}" if earlier else "")
            + ("" if slow is not None else "; slow never scaled up"),
        )
    )
    # 2. The downstream node is sized from the upstream rate before its own queue builds.
    na = ns["a"]
    t_up, reason = na["first_up_s"], na["first_up_reason"]
    built = na["queue_built_s"]
    waited = na["max_queued_before_first_up"]
    by_rate = reason in RATE_REASONS
    no_queue = t_up is not None and (waited is None or waited <= WAITING)
    checks.append(
        (
            "downstream `a` is raised from the upstream rate before its own queue builds",
            t_up is not None and by_rate and no_queue,
            (
                f"a's first scale-up {na['first_up'] or '-'} at {_s(t_up, ' s', 2)} after the "
                f"step, reason `{reason or '-'}` (a rate reason: {by_rate}); most requests "
                f"waiting for a's replicas in the samples from the step to that decision: "
                f"{_s(waited, '', 2)} (queue built means > {WAITING}); a's queue first built at "
                f"{_s(built, ' s', 2)} after the step. Last `GET /live` reading before that "
                "decision (a proxy for the policy's inputs): "
                + json.dumps(a["rates_at_a_first_up"])
                + (
                    ". `up:load` on a node without an SLO means the policy saw its own in-flight "
                    "count over its target with requests waiting (or over twice the target): "
                    "its own queue, not the upstream rate"
                    if (reason or "").startswith("up:load")
                    else ""
                )
            ),
        )
    )
    # 3. Nothing upstream grows while a node downstream is saturated.
    bad = a["grown_while_saturated"]
    prep_ups = a["upstream_ups"]
    sat = a["saturated_s"]
    checks.append(
        (
            "nothing upstream grows while a node downstream of it is saturated",
            not bad,
            (
                "scale-ups of a node while a node downstream of it was saturated (requests "
                f"waiting > {WAITING}, or at max_replicas with every replica full, in the "
                "sample before the decision): "
                + ("; ".join(_grown(d, a["t_step_up_s"]) for d in bad) or "none")
                + f". Seconds saturated: {json.dumps(sat)}. prep's scale-ups in the run: "
                + (
                    ", ".join(f"{d['from']} -> {d['to']} ({d['reason']})" for d in prep_ups)
                    or "none"
                )
            ),
        )
    )
    return checks


def _notes(a: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    """What the checks' terms mean against the policy's own, and figures that explain them."""
    ns = a["nodes"]
    slow = ns["slow"]
    notes = [
        "- *Saturated* in check 3: requests wait for the node's replicas "
        f"(> {WAITING} on average), or it runs at `max_replicas` with every replica full. "
        "The policy's own (`autoscale/graph_decision.py`) is close: requests waiting for its "
        "replicas, or load or latency ratio over 1 at `max_replicas` or while it is scaled "
        "up in the same round; a node with a saturated descendant is held "
        "(`hold:downstream_saturated`, not in the log, which shows changes only).",
        "- The graph policy raises a node from its callers' rate (`up:rate`, before its own "
        f"queue builds) when share x the callers' rate exceeds {ANTICIPATION} x the node's "
        "own. A caller with requests waiting for it that is scaled up passes on what its new "
        "replicas will serve (`desired / service_time x target_utilisation`), not the rate "
        "it manages now: under a closed loop the rates alone rise a hop later, together, "
        "and never show the queue about to be released. Check 2's detail gives the rates "
        "`GET /live` reported (one replica's rate times the running replicas, over a 5 s "
        "window: a proxy for what the controller aggregates).",
    ]
    if slow["peak_target"] is not None and slow["peak_target"] < slow["max_replicas"]:
        notes.append(
            f"- `slow` peaked at {slow['peak_target']} of {slow['max_replicas']} replicas with "
            f"requests waiting for it {a['saturated_s']['slow']} s of the run: its SLO "
            f"({spec['slo_ms']:.0f} ms) applies to its own p95 plus the wait for a replica, and "
            "with an SLO the policy adds replicas only while that reaches `fill` (0.8) of it "
            "(or passes it with requests waiting), or while its callers send more than it "
            "sees: requests waiting alone do not scale it. The "
            "end-to-end p95 (prep, slow, a or b and the hops, on 2 cores) is higher, as the "
            "table shows."
            + (
                f" slow's own p95 in the high phase (`GET /live`, one replica, 2 s window): "
                f"median {_s(p95['median'], ' ms', 0)}, at most {_s(p95['max'], ' ms', 0)} "
                f"({p95['readings']} readings)."
                if (p95 := a["slow_node_p95_high_ms"])
                else ""
            )
        )
    return notes


def report(
    raw: dict[str, Any], spec: dict[str, Any], name: str, reports_dir: str
) -> tuple[str, dict[str, Any]]:
    """The markdown and the JSON data of the run; writes the plot to ``reports_dir``."""
    run = raw["run"]
    graph_nodes = {n["name"]: n for n in nodes(spec)}
    settings = {n: graph_nodes[n]["autoscaling"] for n in NODES}
    max_ongoing = {n: int(graph_nodes[n]["max_ongoing_requests"]) for n in NODES}
    a = analyse(run, spec, settings, max_ongoing)
    png = f"{name}.png"
    plot(a, spec, os.path.join(reports_dir, png))
    ns = a["nodes"]
    rows = [
        [
            f"`{n}`",
            _s(ns[n]["first_up_s"], " s", 2),
            ns[n]["first_up"] or "-",
            f"`{ns[n]['first_up_reason']}`" if ns[n]["first_up_reason"] else "-",
            _s(ns[n]["queue_built_s"], " s", 2),
            f"{ns[n]['peak_running']} / {ns[n]['peak_target']} (max {ns[n]['max_replicas']})",
            f"{ns[n]['ups']} / {ns[n]['downs']}",
            _s(ns[n]["replica_seconds"]),
            _s(a["saturated_s"][n], " s"),
            ns[n]["running_at_end"],
        ]
        for n in NODES
    ]
    headers = [
        "node",
        "first scale-up decision after the step",
        "replicas",
        "reason",
        "own queue first > 0.5 after the step",
        "peak running / target",
        "ups / downs",
        "replica-seconds",
        "time saturated",
        "running at the end",
    ]
    checks = _checks(a)
    verdicts = [
        f"- **{'PASS' if ok else 'FAIL'}**: {what}: {detail}" for what, ok, detail in checks
    ]
    decisions = [
        f"| {d['t'] - a['t_step_up_s']:+.1f} s | `{d['node']}` | {d['from']} -> {d['to']} | "
        f"`{d['reason']}` |"
        for d in a["decisions"]
    ]
    slo = spec["slo_ms"]
    summary = [
        [
            "end-to-end p50 / p95, high phase",
            f"{_s(a['p50_high_ms'], ' ms', 0)} / {_s(a['p95_high_ms'], ' ms', 0)}",
        ],
        ["throughput, high phase", _s(a["rps_high"], " req/s")],
        [
            f"1-s windows with end-to-end p95 <= {slo:.0f} ms, whole run",
            _s(a["slo_attainment_pct"], " %"),
        ],
        ["the same, high phase", _s(a["slo_attainment_high_pct"], " %")],
        ["requests (failed)", f"{a['requests']} ({a['errors']})"],
        ["order of the first scale-ups after the step", " -> ".join(a["order"]) or "-"],
    ]
    lines = [
        "# Graph-level autoscaling, shown live",
        "",
        f"Measured {raw.get('measured_at') or h.now()} with `python "
        "loadtests/autoscale_graph_live.py` on a private local Ray cluster (Ray "
        f"{raw['machine'].get('ray')}, `graphs.cluster.start`, token auth, "
        "`graphs.cluster.RECOMMENDED_ENV`, Serve on 127.0.0.1:8100, 2 CPUs).",
        "",
        f"Graph `{APP}`, deployed from a Serve config (`graphs.builder:build_app`, as `serve "
        f"deploy` does) whose application sets `autoscaling_policy: {{policy_function: "
        f"{GRAPH_POLICY}}}`: ingress -> `prep` (preprocess, `passthrough:identity`, deployment "
        "of its own, `max_ongoing_requests: 8`) -> `slow` (python model, `passthrough:Sleep` "
        f"{spec['slow_ms']:.0f} ms, `max_ongoing_requests: 2`: {2000 / spec['slow_ms']:.0f} "
        f"req/s a replica) -> `split` (weighted router, fused into the ingress) -> 80 % `a`, "
        f"20 % `b` (python models, `Sleep` {spec['arm_ms']:.0f} ms, `max_ongoing_requests: 2`: "
        f"{2000 / spec['arm_ms']:.0f} req/s a replica). Every node `num_cpus: 0`. The policy's "
        "topology (edges from each deployment's `policy_kwargs`): prep -> slow (1.0), slow -> "
        "a (0.8), slow -> b (0.2).",
        "",
        "Each node's `autoscaling:`:",
        "",
        *[f"- `{n}`: `{json.dumps(settings[n])}`" for n in NODES],
        "",
        f"Load: `locust -f loadtests/locust_step.py --headless` (closed loop, no think time), "
        f"{spec['low_users']} users for {spec['low_s']:.0f} s, {spec['high_users']} for "
        f"{spec['high_s']:.0f} s, {spec['low_users']} for {spec['tail_s']:.0f} s. Every "
        f"{SAMPLE_EVERY_S} s the driver samples each node's running replicas "
        "(`serve.status()`), its target (`target_num_replicas`, controller's instance details) "
        "and its requests in flight as the controller aggregates them for the policy (running "
        "+ queued at the callers' handles, over its 2 s look-back); *waiting* is that minus "
        "`max_ongoing_requests` x running replicas. Decisions and reasons: the controller "
        "log's `servegraph graph policy: <app>/<node> a -> b replicas (reason)` lines (only "
        "changes are logged, holds are not). Times are seconds after the step up.",
        "",
        h.md_table(headers, rows),
        "",
        h.md_table(["", "figure"], summary),
        "",
        "## Checks",
        "",
        *verdicts,
        "",
        "## Reading the figures",
        "",
        *_notes(a, spec),
        "",
        f"![replicas of each node, latency and throughput over time]({png})",
        "",
        "## Scaling decisions (Serve controller log)",
        "",
        "| time after the step | node | replicas | reason |",
        "|---|---|---|---|",
        *(decisions or ["| - | - | - | none logged |"]),
        "",
    ]
    if run["policy_errors"]:
        lines += [
            "## Policy errors in the controller log",
            "",
            "```",
            *run["policy_errors"][:5],
            "```",
            "",
        ]
    lines += [
        "## Conditions",
        "",
        f"Locust exit code {run['exit_code']} (0: no failed request). CPU while the load ran "
        f"(cores; `foreign` is everything outside this benchmark's process tree, e.g. another "
        f"cluster on the machine): {json.dumps(run['cpu'])}. Sampler errors: "
        f"{len(run['sampler_errors'])}. Machine: {json.dumps(raw['machine'])}.",
    ]
    data = {
        "spec": spec,
        "machine": raw["machine"],
        "serve_config": run["serve_config"],
        "checks": [{"check": w, "pass": ok, "detail": d} for w, ok, d in checks],
        "results": a,
        "run": {k: v for k, v in run.items() if k not in ("requests", "samples")},
    }
    return "\n".join(lines), data
