"""The load tests' shared harness, one concept per module.

- :mod:`.args`: shared flags (timing, concurrency, ``--keep-logs``, ``--reports-dir``), parsing;
- :mod:`.worker`: one fresh process per cluster configuration (``run_worker``);
- :mod:`.cluster`: the private, token-authenticated Ray cluster of a worker, and its teardown;
- :mod:`.measure`: closed-loop load with the vendored ``loadgen``, CPU split, summaries;
- :mod:`.report`: checks, markdown tables, ``reports/<name>.md`` and ``.json``;
- :mod:`.plots`: matplotlib on its file backend.

Scripts use it as ``import _harness as h``.
"""

from __future__ import annotations

from .args import (
    add_concurrencies,
    add_concurrency,
    add_keep_logs,
    add_timing,
    parse,
    parser,
)
from .cluster import (
    BASE_URL,
    HOST,
    HTTP_PORT,
    RAY_SERVE_DEFAULTS,
    cluster_env,
    private_dir,
    ray_cluster,
    replica_counts,
    wait_ready,
)
from .measure import (
    CpuByProcess,
    CpuWatch,
    alternating_rounds,
    machine_info,
    measure,
    measure_async,
    summarize,
    summarize_targets,
    warm_up,
)
from .paths import HERE, REPO, REPORTS
from .report import (
    check,
    emit,
    figure_cells,
    figure_headers,
    md_table,
    measured,
    now,
    read_raw,
    rows_table,
    switches,
    value,
    verdict,
    write_markdown,
    write_report,
)
from .worker import run_worker

__all__ = [
    "BASE_URL",
    "HERE",
    "HOST",
    "HTTP_PORT",
    "RAY_SERVE_DEFAULTS",
    "REPO",
    "REPORTS",
    "CpuByProcess",
    "CpuWatch",
    "add_concurrencies",
    "add_concurrency",
    "add_keep_logs",
    "add_timing",
    "alternating_rounds",
    "check",
    "cluster_env",
    "emit",
    "figure_cells",
    "figure_headers",
    "machine_info",
    "md_table",
    "measure",
    "measure_async",
    "measured",
    "now",
    "parse",
    "parser",
    "private_dir",
    "ray_cluster",
    "read_raw",
    "replica_counts",
    "rows_table",
    "run_worker",
    "summarize",
    "summarize_targets",
    "switches",
    "value",
    "verdict",
    "wait_ready",
    "warm_up",
    "write_markdown",
    "write_report",
]
