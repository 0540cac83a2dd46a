"""Per-node live figures (``GET /<graph>/live``) from replica statistics (no Ray)."""

from __future__ import annotations

import pytest

from autoscale.stats import ERROR_RATE, P50_MS, P95_MS, ReplicaStats
from graphs.live import bottleneck, node_figures


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_replica_stats_report_the_median_and_failures_only_when_there_are_some() -> None:
    clock = Clock()
    stats = ReplicaStats(latency_window_s=2.0, rate_window_s=5.0, clock=clock)
    for ms in (10, 20, 30, 40, 100):
        start = stats.started()
        clock.t += ms / 1000
        stats.finished(start)
    snap = stats.snapshot()
    assert snap[P50_MS] == pytest.approx(30.0) and snap[P95_MS] == pytest.approx(100.0)
    assert ERROR_RATE not in snap
    start = stats.started()
    stats.failed()
    stats.finished(start)
    assert stats.snapshot()[ERROR_RATE] == pytest.approx(1 / 5.0)
    clock.t += 6.0  # past both windows: no latency, no errors
    assert set(stats.snapshot()) == {"arrival_rate", "queue_len"}


def test_node_figures_scale_one_replicas_rate_by_the_running_replicas() -> None:
    one = {
        "arrival_rate": 10.0,
        "error_rate": 0.5,
        "latency_p50_ms": 4.0,
        "latency_p95_ms": 9.0,
        "service_time_ms": 50.0,
        "queue_len": 2.0,
    }
    f = node_figures(one, replicas=3)
    assert f["rps"] == 30.0 and f["errors_per_s"] == 1.5
    assert f["per_replica"] == {"rps": 10.0, "errors_per_s": 0.5}
    assert (f["p50_ms"], f["p95_ms"], f["in_flight"]) == (4.0, 9.0, 2.0)
    assert f["busy"] == pytest.approx(0.5)  # 10 req/s x 50 ms
    idle = node_figures({"arrival_rate": 0.0, "queue_len": 0.0}, replicas=0)
    assert idle["rps"] == 0.0 and idle["p50_ms"] is None and idle["busy"] == 0.0


def test_the_bottleneck_is_the_busiest_node_and_none_when_idle() -> None:
    nodes = {"pre": {"busy": 0.1}, "model": {"busy": 0.8}, "down": {"error": "no answer"}}
    assert bottleneck(nodes) == "model"
    assert bottleneck({"pre": {"busy": 0.0}}) is None
    assert bottleneck({}) is None
