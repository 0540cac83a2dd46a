"""graphs.metrics without Ray: how a call's outcome and a refused reward are classified, what a
batched model has waiting; the shipped dashboard and scrape config (their metric names are
checked against a real scrape in tests/integration/test_metrics.py)."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
import yaml

from graphs.metrics import OUTCOMES, feedback_reason, outcome_of, queued_in
from nodes.errors import (
    BreakerOpenError,
    DeadlineExceededError,
    InternalError,
    NodeError,
    OverloadedError,
    PayloadTooLargeError,
    QuorumError,
    RequestValidationError,
    UnauthorizedError,
)
from routing.errors import StateUnavailableError
from routing.tokens import (
    ExpiredTokenError,
    ForgedTokenError,
    MalformedTokenError,
    ReplayedTokenError,
)
from tests.promql import label_values_metric, metric_names
from tests.support import ROOT

DASHBOARD = os.path.join(ROOT, "configs", "grafana", "servegraph.json")
SCRAPE_CONFIG = os.path.join(ROOT, "configs", "prometheus", "prometheus.yml")


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (None, "ok"),
        (RequestValidationError("inputs.x", "bad"), "client_error"),
        (PayloadTooLargeError("big"), "client_error"),
        (UnauthorizedError("no"), "client_error"),
        (asyncio.CancelledError(), "client_error"),
        (DeadlineExceededError("m", 1.0), "timeout"),
        (QuorumError("too few", "both"), "timeout"),
        (OverloadedError("full"), "shed"),
        (BreakerOpenError("m"), "shed"),
        (StateUnavailableError("holder restarting"), "shed"),
        (NodeError("m"), "error"),
        (InternalError(), "error"),
        (RuntimeError("boom"), "error"),
    ],
)
def test_outcome_of_maps_the_error_classes(exc: BaseException | None, outcome: str) -> None:
    assert outcome_of(exc) == outcome
    assert outcome in OUTCOMES


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (MalformedTokenError("x"), "malformed"),
        (ForgedTokenError("x"), "forged"),
        (ExpiredTokenError("x"), "expired"),
        (ReplayedTokenError("x"), "replayed"),
        (StateUnavailableError("x"), "unavailable"),
        (RuntimeError("x"), "error"),
    ],
)
def test_feedback_refusals_are_counted_by_reason(exc: BaseException, reason: str) -> None:
    assert feedback_reason(exc) == reason


class _Batcher:
    waiting = 3


class _Batched:
    batcher = _Batcher()


def test_queued_reads_a_batched_models_waiting_calls_and_is_zero_elsewhere() -> None:
    assert queued_in(_Batched()) == 3
    assert queued_in(object()) == 0


def test_metric_names_skip_functions_labels_ranges_and_grouping() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (node, le) (rate(ray_a_bucket{application="$graph", '
        'outcome!="ok"}[$__rate_interval]))) / ignoring(arm) group_left '
        "sum without (replica) (ray_b_total) > bool 0 and on(node) ray_c"
    )
    assert metric_names(expr) == {"ray_a_bucket", "ray_b_total", "ray_c"}
    assert label_values_metric("label_values(ray_x_total, application)") == "ray_x_total"


def _exprs() -> list[str]:
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_every_dashboard_query_reads_ray_metrics_of_servegraph_or_serve() -> None:
    exprs = _exprs()
    assert len(exprs) >= 15
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert all(n.startswith(("ray_servegraph_", "ray_serve_")) for n in names), expr


def test_scrape_config_reads_rays_service_discovery_file() -> None:
    with open(SCRAPE_CONFIG) as f:
        config = yaml.safe_load(f)
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "ray"
    (sd,) = job["file_sd_configs"]
    assert sd["files"] == ["/tmp/ray/prom_metrics_service_discovery.json"]
