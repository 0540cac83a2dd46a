"""Reports: target checks with verdicts, markdown tables, and ``reports/<name>.md`` / ``.json``.

A benchmark's report is markdown (what a reader checks: targets with PASS/FAIL first, figures,
conditions) plus the raw figures as JSON under the same name; :func:`emit` writes both and
prints the summary, the markdown and where the report went.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .paths import REPORTS


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")


def read_raw(path: str) -> dict[str, Any]:
    """A worker's raw figures saved by an earlier run (``--from-raw``), with ``measured_at``
    the file's time when it has none."""
    with open(path, encoding="utf-8") as f:
        raw: dict[str, Any] = json.load(f)
    mtime = time.localtime(os.path.getmtime(path))
    raw.setdefault("measured_at", time.strftime("%Y-%m-%d %H:%M:%S %Z", mtime))
    return raw


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "PASS" if ok else "FAIL"


def check(
    name: str, value: float, target: float | None, higher_is_better: bool, **extra: Any
) -> dict[str, Any]:
    """One ratio against its target (``None``: reported only), as a report row."""
    row = {"ratio": name, "value": round(value, 3), **extra}
    if target is None:
        row.update(target="reported", verdict="-")
    else:
        row.update(
            target=f"{'>=' if higher_is_better else '<='} {target}",
            verdict=verdict(value, target, higher_is_better),
        )
    return row


def value(v: Any, unit: str = "", nd: int = 1) -> str:
    """``v`` for a report's text: ``-`` when None, floats to ``nd`` decimals, then ``unit``."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}{unit}"
    return f"{v}{unit}"


def cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def rows_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> str:
    """A table of ``rows`` (dicts): ``columns`` maps each key shown to its header."""
    return md_table(list(columns.values()), [[r[k] for k in columns] for r in rows])


#: Columns of :func:`figure_cells`.
FIGURE_HEADERS = ["p50 ms", "p95 ms", "rps", "p50 range", "errors", "other cores"]


def figure_cells(s: Mapping[str, Any], *, rps_range: bool = False) -> list[Any]:
    """A :func:`~_harness.measure.summarize` result as table cells (``FIGURE_HEADERS``; with
    ``rps_range``, an ``rps range`` column after ``p50 range``)."""
    cells = [
        s["p50_ms"],
        s["p95_ms"],
        s["rps"],
        f"{s['p50_range_ms'][0]:.2f}-{s['p50_range_ms'][1]:.2f}",
    ]
    if rps_range:
        cells.append(f"{s['rps_range'][0]:.0f}-{s['rps_range'][1]:.0f}")
    return [*cells, s["errors"], s["cpu_cores_foreign"]]


def figure_headers(*, rps_range: bool = False) -> list[str]:
    headers = list(FIGURE_HEADERS)
    if rps_range:
        headers.insert(4, "rps range")
    return headers


def switches(env: Mapping[str, str]) -> str:
    """``env`` as inline code: ```K=V`, `K=V```."""
    return ", ".join(f"`{k}={v}`" for k, v in env.items())


def command(script: str, argv: Sequence[str] | None = None) -> str:
    """How the script was run: ``python loadtests/<script> <args>``."""
    args = " ".join(sys.argv[1:] if argv is None else argv)
    return f"python loadtests/{script}" + (f" {args}" if args else "")


def measured(script: str) -> str:
    """The report's first line: when and by which command."""
    return f"Measured {now()} by `{command(script)}`."


def write_markdown(name: str, markdown: str, reports_dir: str | None = None) -> str:
    """Write ``<reports_dir>/<name>.md``; its path."""
    reports_dir = reports_dir or REPORTS
    os.makedirs(reports_dir, exist_ok=True)
    path = os.path.join(reports_dir, f"{name}.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(markdown.rstrip() + "\n")
    return path


def write_report(
    name: str, markdown: str, data: Mapping[str, Any], reports_dir: str | None = None
) -> str:
    """Write ``<reports_dir>/<name>.md`` and the raw figures to ``<name>.json``; the md path."""
    path = write_markdown(name, markdown, reports_dir)
    with open(os.path.join(os.path.dirname(path), f"{name}.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, default=str)
    return path


def emit(
    name: str,
    markdown: str,
    data: Mapping[str, Any],
    summary: Any,
    reports_dir: str | None = None,
    *,
    indent: int | None = 1,
) -> str:
    """Write the report, then print ``summary`` as JSON, the markdown, and the report's path."""
    path = write_report(name, markdown, data, reports_dir)
    print(json.dumps(summary, indent=indent))
    print()
    print(markdown)
    print(f"\nreport: {path}", file=sys.stderr)
    return path
