"""The chaos report: one row per scenario (sent, failed, longest error window, target,
verdict), then each scenario's faults, checks, observations and failed requests."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

import _harness as h

from .analysis import LATE_S, WINDOW_GAP_S

#: Failed requests listed per scenario in the markdown (all of them are in the JSON).
SHOWN = 25
FAILURE_COLUMNS = {
    "t_start_s": "t (s)",
    "after_fault_s": "after fault (s)",
    "took_s": "took (s)",
    "error": "error",
    "detail": "detail",
    "request_id": "request id",
}


def _kinds(s: Mapping[str, Any]) -> str:
    kinds = s.get("failed_by_kind") or {}
    return ", ".join(f"{k}: {v}" for k, v in kinds.items()) or "-"


def overview(scenarios: Mapping[str, Any]) -> str:
    rows = []
    for n, r in scenarios.items():
        p = r.get("predict") or {}
        fb = r.get("feedback") or {}
        failed = f"{p.get('failed', '-')} ({p.get('failed_pct', '-')} %)" if p else "-"
        if fb.get("sent"):
            failed += f"; feedback {fb['failed']} of {fb['sent']}"
        rows.append(
            [
                n,
                r.get("title", ""),
                p.get("sent", "-"),
                failed,
                _kinds(p) if p else "-",
                p.get("longest_error_window_s", "-"),
                p.get("failures_after_fault_plus_5s", "-"),
                r.get("target", ""),
                f"**{r.get('verdict', '?')}**",
            ]
        )
    headers = [
        "#",
        "scenario",
        "sent",
        "failed",
        "failed by kind",
        "longest error window (s)",
        f"failed after T+{LATE_S:g} s",
        "target",
        "verdict",
    ]
    return h.md_table(headers, rows)


def _compact(value: Any, depth: int = 1) -> str:
    """``value`` as inline JSON, or, when long, as nested bullets (one line per item/key)."""
    text = json.dumps(value, default=str)
    if len(text) < 300 or depth > 3 or not isinstance(value, (list, dict)):
        return f"`{text}`"
    pad = "  " * depth
    items = value.items() if isinstance(value, dict) else enumerate(value)
    return "".join(
        f"\n{pad}- " + (f"{k}: " if isinstance(value, dict) else "") + _compact(v, depth + 1)
        for k, v in items
    )


def section(n: str, r: Mapping[str, Any]) -> list[str]:
    lines = [f"## {n}. {r.get('title', '')}: {r.get('verdict')}", ""]
    if r.get("skipped"):
        return [*lines, f"Skipped: {r['skipped']}", ""]
    if r.get("error"):
        return [*lines, f"The scenario could not run to its end: `{r['error']}`", ""]
    lines += [f"Target: {r.get('target')}.", ""]
    for label, key in (
        ("Predictions", "predict"),
        ("Feedback", "feedback"),
        ("Baseline (no fault)", "baseline"),
    ):
        s = r.get(key)
        if s and s.get("sent"):
            lines.append(
                f"- {label}: {s['sent']} sent, {s['failed']} failed ({_kinds(s)}), "
                f"longest error window {s['longest_error_window_s']} s, failure span "
                f"{s['failure_span_s']} s, {s['failures_after_fault_plus_5s']} failed after "
                f"T+{LATE_S:g} s; {s['rps']} req/s, p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms."
            )
    if r.get("faults"):
        lines += ["", "Faults (t: seconds after the load started):", ""]
        lines += [f"- `{json.dumps(f, default=str)}`" for f in r["faults"]]
    if r.get("checks"):
        lines += ["", "Checks:", ""]
        lines += [f"- {'PASS' if ok else 'FAIL'}: {name}" for name, ok in r["checks"].items()]
    if r.get("observed"):
        lines += ["", "Observed:", ""]
        for key, value in r["observed"].items():
            if key in ("log_lines", "server_log_of_failed"):
                shown = "\n".join(value) if value else "(none)"
                lines += [f"- {key}:", "", "```", shown, "```", ""]
            else:
                lines.append(f"- {key}: {_compact(value)}")
    for label, key in (("Failed predictions", "predict"), ("Failed feedback", "feedback")):
        failures = ((r.get(key) or {}).get("failures") or [])[:SHOWN]
        if failures:
            total = r[key]["failed"]
            lines += ["", f"{label} ({len(failures)} of {total} listed):", ""]
            lines.append(h.rows_table(failures, FAILURE_COLUMNS))
    return [*lines, ""]


def _uncommitted(product: Mapping[str, Any]) -> str:
    files = product.get("uncommitted") or []
    if not files:
        return "."
    shown = ", ".join(f"`{f}`" for f in files[:12]) + (" ..." if len(files) > 12 else "")
    return f", with uncommitted changes to {len(files)} product files: {shown}."


def render(args: argparse.Namespace, raw: Mapping[str, Any]) -> str:
    from graphs.cluster import RECOMMENDED_ENV

    scenarios = raw["scenarios"]
    lines = [
        "# Chaos: failures under steady load",
        "",
        raw.get("measured") or h.measured("chaos.py"),
        "",
        f"Product code measured: `{raw.get('product', {}).get('commit', '?')}` "
        f"(imported by the driver from `{raw.get('product', {}).get('checkout', '?')}`, by "
        f"the replicas from `{raw.get('product', {}).get('replicas_import', '?')}`)"
        + _uncommitted(raw.get("product", {})),
        "",
        f"Each scenario: a closed loop of {args.concurrency} callers (`httpx`, loopback) "
        f'posting `{{"inputs": {{"x": [1.0]}}}}` for {args.seconds:g} s while the faults '
        "fire; every request's start, end, status and error is recorded. One fresh private "
        "Ray cluster (token auth, `RECOMMENDED_ENV`: "
        f"{h.switches(RECOMMENDED_ENV)}, Serve on 127.0.0.1:8100) runs the scenarios in turn, "
        "each on its own application, deleted after it; scenario 4 gets a two-node cluster of "
        "its own. Every deployment `num_cpus: 0`.",
        "",
        f"Error window: failures whose starts lie within {WINDOW_GAP_S:g} s of the previous "
        "failure's end form one window, from its first failure's start to its last one's end; "
        f'"failed after T+{LATE_S:g} s" counts failures that started more than {LATE_S:g} s '
        "after the latest fault before them. Failures by kind: `HTTP <status>` (with the body's "
        "`error`), `conn:<exception>` (no HTTP answer: connection refused, reset or dropped), "
        "`timeout:<exception>` (the client's 60 s).",
        "",
        overview(scenarios),
        "",
    ]
    for n, r in scenarios.items():
        lines += section(n, r)
    lines += [
        "## Conditions",
        "",
        f"- {json.dumps(raw.get('machine', {}), default=str)}",
        "- The machine has 2 cores shared with other work; latencies are indicative, counts of "
        "failed requests are what the targets judge.",
    ]
    return "\n".join(lines)
