"""Every node's metrics on Ray's real Prometheus endpoint: the digits graph with its default
placement and with ``fusion: all`` (every node in the ingress), and a canary router with arm
breakers; then every query of the shipped Grafana dashboard against the same scrape."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import ray

from graphs import Graph, tensor
from graphs.builder import build_app
from graphs.examples.digits import ensure_trained
from routing.store import NAMESPACE, actor_name
from tests.integration import helpers
from tests.promql import has, label_values_metric, metric_names
from tests.promql import scrape as scrape_endpoint
from tests.support import (
    ROOT,
    apps_running,
    ensure_serve,
    wait_for,
)

#: App name -> build args: the digits graph (graph label ``digits`` in both) as shipped and
#: fused; a canary graph.
DIGITS = os.path.join(ROOT, "graphs", "examples", "digits.yaml")
APPS = {"obs": {"graph": DIGITS}, "obsfused": {"graph": DIGITS, "fusion": "all"}}
CANARY = "obscanary"
DIGITS_NODES = ("scale", "split", "logreg", "mlp", "both")
BATCHED = ("logreg", "mlp")
#: Families every node reports, by the sample name Ray's endpoint shows.
NODE_SAMPLES = (
    "ray_servegraph_node_requests_total",
    "ray_servegraph_node_latency_ms_bucket",
    "ray_servegraph_node_latency_ms_count",
    "ray_servegraph_node_in_flight",
    "ray_servegraph_node_queue_length",
)
#: Dashboard series this module cannot make appear, and why:
#: - LLM nodes only (time to first token, tokens/s): checked in tests/llm/test_llm_graph.py.
#: - Failures of the router's state holder itself (a change log or snapshot that cannot be
#:   written, a holder that cannot be reached): those need a broken state folder or a dead
#:   holder (test_failures.py and loadtests/chaos.py make those faults; they do not scrape).
NOT_HERE = {
    "ray_servegraph_llm_time_to_first_token_ms_bucket",
    "ray_servegraph_llm_tokens_per_second_sum",
    "ray_servegraph_llm_tokens_per_second_count",
    "ray_servegraph_router_state_failures_total",
    "ray_servegraph_router_sync_failures_total",
}
X = [tensor("x", "FP32", [-1, 1])]
#: Opens after 4 calls of which half failed, and stays open for the module.
BREAKER = {"min_calls": 4, "failure_ratio": 0.5, "open_s": 60}


def _canary_graph(state_dir: str) -> Any:
    """A canary router over two Python models, all fused into the ingress: the candidate
    always fails, so its calls count as errors, and both the router's breaker of that arm and
    the ingress's breaker of calls to that node open."""
    g = Graph(CANARY, inputs=X, fusion="all")
    arms = [
        g.model(
            f"{CANARY}-{name}",
            runtime="python",
            model_class=helpers.Flaky,
            init_kwargs={"name": name, "fail_rate": rate},
            breaker=BREAKER,
        )
        for name, rate in (("stable", 0.0), ("cand", 1.0))
    ]
    g.entry = g.router(
        "ramp",
        arms,
        canary={"steps": [50, 100], "min_step_seconds": 600},
        breaker=BREAKER,
        state={"dir": state_dir},
    )
    return g.build()


@pytest.fixture(scope="module")
def urls(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The three apps, started together; deleted after the module."""
    ensure_serve()
    ensure_trained()
    apps = {name: build_app(args) for name, args in APPS.items()}
    apps[CANARY] = _canary_graph(str(tmp_path_factory.mktemp("canary-state")))
    try:
        with apps_running(apps) as urls:
            yield urls
    finally:
        for app, router in [*((a, "split") for a in APPS), (CANARY, "ramp")]:
            try:  # the routers' state holders outlive their apps
                ray.kill(ray.get_actor(actor_name(app, router), namespace=NAMESPACE))
            except ValueError:
                pass


async def _traffic(url: str, body: dict[str, Any], n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        sem = asyncio.Semaphore(8)

        async def one() -> httpx.Response:
            async with sem:
                return await client.post(f"{url}/predict", json=body)

        return list(await asyncio.gather(*(one() for _ in range(n))))


@pytest.fixture(scope="module")
def scrape(urls: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    """Traffic on every app (predictions, feedback accepted and refused), then a scrape that
    shows every series the tests below look for (polled: Ray exports every second)."""
    digits = {"inputs": {"input": [[8.0] * 64]}}
    with httpx.Client(timeout=60, headers={"Connection": "close"}) as http:
        for app in APPS:
            responses = asyncio.run(_traffic(urls[app], digits, 60))
            assert {r.status_code for r in responses} == {200}, responses[0].text
            for r in responses[:5]:
                token = r.json()["feedback_token"]
                fb = http.post(f"{urls[app]}/feedback", json={"token": token, "reward": 1.0})
                assert fb.status_code == 200, fb.text
            forged = http.post(f"{urls[app]}/feedback", json={"token": "x.y.z", "reward": 1.0})
            assert forged.status_code in (400, 401), forged.text
        asyncio.run(_traffic(urls[CANARY], {"inputs": {"x": [[1.0]]}}, 80))

    def complete() -> dict[str, list[dict[str, str]]]:
        s = scrape_endpoint()
        wanted = [
            (name, {"application": app, "graph": "digits", "node": node})
            for app in APPS
            for node in DIGITS_NODES
            for name in NODE_SAMPLES
        ]
        wanted += [
            ("ray_servegraph_node_batch_size_count", {"application": app, "node": node})
            for app in APPS
            for node in BATCHED
        ]
        wanted += [
            ("ray_servegraph_router_canary_stage", {"application": CANARY, "router": "ramp"}),
            (
                "ray_servegraph_router_breaker_state",
                {"application": CANARY, "arm": f"{CANARY}-cand"},
            ),
            ("ray_servegraph_node_requests_total", {"node": f"{CANARY}-cand", "outcome": "error"}),
            ("ray_servegraph_breaker_state", {"application": CANARY, "node": f"{CANARY}-cand"}),
        ]
        for app in APPS:
            wanted += [
                ("ray_servegraph_router_arm_probability", {"application": app, "arm": "both"}),
                ("ray_servegraph_router_reward_count", {"application": app, "router": "split"}),
                ("ray_servegraph_feedback_total", {"application": app, "outcome": "accepted"}),
                ("ray_servegraph_feedback_total", {"application": app, "outcome": "refused"}),
            ]
        missing = [(n, labels) for n, labels in wanted if not has(s, n, **labels)]
        if missing:  # wait_for reports the last failure
            raise AssertionError(f"missing: {missing}")
        return s

    return dict(wait_for(complete, 60, "every series on Ray's metrics endpoint"))


@pytest.mark.parametrize("app", list(APPS))
def test_every_digits_node_reports_each_family_fused_or_not(
    app: str, scrape: dict[str, list[dict[str, str]]]
) -> None:
    for node in DIGITS_NODES:
        ok = [
            s
            for s in scrape["ray_servegraph_node_requests_total"]
            if s.get("application") == app and s["node"] == node and s["outcome"] == "ok"
        ]
        assert ok, f"{app}: no ok calls of {node}"
        deployment = ok[0]["deployment"]
        fused = app == "obsfused" or node not in BATCHED
        assert (deployment == "ingress") == fused, (app, node, deployment)
    # Latency buckets reach LLM durations; nothing is labelled per user or per request.
    buckets = {
        float(s["le"])
        for s in scrape["ray_servegraph_node_latency_ms_bucket"]
        if s.get("application") == app
    }
    assert 120000.0 in buckets
    ours = [labels for name, series in scrape.items() if "servegraph" in name for labels in series]
    allowed = {"graph", "node", "router", "arm", "outcome", "reason", "kind", "le", "tenant"}
    allowed |= {"deployment", "replica", "application", "route", "Component", "NodeAddress"}
    allowed |= {"SessionName", "Version", "WorkerId", "JobId", "instance", "job"}
    allowed |= {"otel_scope_name", "otel_scope_version", "otel_scope_schema_url"}  # Ray's exporter
    assert {k for labels in ours for k in labels} <= allowed


def test_every_dashboard_query_reads_series_the_endpoint_has(
    scrape: dict[str, list[dict[str, str]]],
) -> None:
    with open(os.path.join(ROOT, "configs", "grafana", "servegraph.json")) as f:
        dashboard = json.load(f)
    names: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            names |= metric_names(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            metric = label_values_metric(variable["query"]["query"])
            assert metric is not None, variable
            names.add(metric)
    assert NOT_HERE <= names, "NOT_HERE lists a series the dashboard no longer reads"
    # Ray's controller sets some of its gauges again only every 10 s
    # (RAY_SERVE_STATUS_GAUGE_REPORT_INTERVAL_S, e.g. ray_serve_deployment_replica_healthy),
    # and with the test cluster's 1 s export a gauge stays 2 s: scrape again until each shows.
    seen = set(scrape)

    def all_seen() -> bool:
        seen.update(scrape_endpoint())
        missing = sorted(names - NOT_HERE - seen)
        if missing:
            raise AssertionError(f"dashboard series not on Ray's endpoint: {missing}")
        return True

    wait_for(all_seen, 30, "every dashboard series on Ray's endpoint")
