"""Drift and the inference log live: the digits A/B graph with ``observe:`` on sees held-out
digits as no drift and shifted pixels as drift, counts rewards per arm, logs sampled pairs and
their rewards as CloudEvents in JSONL, and exports its figures on Ray's Prometheus endpoint."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import ray

from graphs.builder import load_graph
from graphs.compiler import compile_graph
from graphs.examples.digits import ensure_trained
from graphs.spec import RouterNode
from graphs.validate import PACKAGE_ROOT
from nodes.observe_spec import ObserveSpec
from tests.support import wait_for

ROWS = 30  # rows per request: the 450 held-out digits in 15 requests


def _observed_digits(state_dir: str, log_dir: str) -> Any:
    spec = load_graph(os.path.join(PACKAGE_ROOT, "graphs", "examples", "digits_ab.yaml"))
    assert spec.observe is not None and spec.observe.drift is not None  # the shipped reference
    drift = spec.observe.drift.model_copy(
        update={"sample_rate": 1.0, "window": 450, "min_samples": 400, "every_s": 0.25}
    )
    observe = ObserveSpec.model_validate({"log": {"path": log_dir, "sample_rate": 1.0}})
    nodes = [
        n.model_copy(update={"state": n.state.model_copy(update={"dir": state_dir})})
        if isinstance(n, RouterNode)
        else n
        for n in spec.nodes
    ]
    observed = observe.model_copy(update={"drift": drift})
    update = {"name": "observe", "nodes": nodes, "observe": observed}
    return compile_graph(spec.model_copy(update=update))


def _send(http: httpx.Client, url: str, x: np.ndarray) -> list[dict[str, Any]]:
    replies = []
    for i in range(0, len(x), ROWS):
        r = http.post(f"{url}/predict", json={"inputs": {"input": x[i : i + ROWS].tolist()}})
        assert r.status_code == 200, r.text
        replies.append(r.json())
    return replies


def _metric(name: str, **labels: str) -> float | None:
    """The value of ``name`` with ``labels`` on this node's Ray metrics endpoint, if exported."""
    from prometheus_client.parser import text_string_to_metric_families

    port = ray.nodes()[0]["MetricsExportPort"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(values) if values else None


def test_shifted_digits_are_flagged_and_pairs_and_rewards_are_logged(
    state_dir: str, deploy: Callable[..., str], http: httpx.Client, tmp_path: Any
) -> None:
    log_dir = str(tmp_path / "log")
    url = deploy(_observed_digits(state_dir, log_dir), "observe")
    held_out = np.load(os.path.join(ensure_trained(), "test.npz"))["x"]
    assert held_out.shape == (450, 64)

    def drift(full: bool, flagged: bool | None = None) -> dict[str, Any] | None:
        report = http.get(f"{url}/graph").json()["observe"]["drift"]
        if report["state"] != "comparing" or report["tensors"]["input"]["rows"] < 450 * full:
            return None
        return report if flagged is None or report["flagged"] is flagged else None

    replies = _send(http, url, held_out)
    calm = wait_for(lambda: drift(full=True), 60, "a verdict on the held-out digits")
    assert calm["flagged"] is False, calm["tensors"]["input"]["summary"]
    assert calm["tensors"]["input"]["summary"]["psi_max"] < 0.2
    assert calm["tensors"]["label"]["summary"]["drifted"] == 0  # predicted vs training labels

    # The same digits, fainter and on a grey background: every pixel's distribution moves.
    _send(http, url, np.clip(held_out * 0.5 + 8, 0, 16))

    def shifted() -> dict[str, Any] | None:  # the window fills with shifted rows gradually
        report = drift(full=True, flagged=True)
        return report if report and report["tensors"]["input"]["summary"]["drifted"] >= 32 else None

    moved = wait_for(shifted, 60, "the shifted digits flagged")
    summary = moved["tensors"]["input"]["summary"]
    print("held-out:", calm["tensors"]["input"]["summary"], "shifted:", summary)  # for reports
    assert summary["psi_max"] > 0.2 and summary["drifted"] >= 32, summary

    # A reward for the first response: counted for its arm, and logged with its request id.
    first = replies[0]
    r = http.post(f"{url}/feedback", json={"token": first["feedback_token"], "reward": 1.0})
    assert r.status_code == 200, r.text
    graph = http.get(f"{url}/graph").json()["observe"]
    arm = "logreg" if "logreg" in first["served_by"] else "mlp"
    assert graph["quality"]["split"][arm] == {"rewards": 1, "reward_mean": 1.0}
    assert graph["settings"]["drift"]["window"] == 450

    def logged() -> list[dict[str, Any]] | None:
        lines = [json.loads(line) for f in glob.glob(f"{log_dir}/*.jsonl") for line in open(f)]
        return lines if any(e["type"].endswith(".feedback") for e in lines) else None

    events = wait_for(logged, 30, "the feedback event in the JSONL log")
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["type"].rsplit(".", 1)[1], []).append(event)
    assert len(by_type["request"]) == len(by_type["response"]) == 30  # sample_rate 1
    response = next(e for e in by_type["response"] if e["requestid"] == first["request_id"])
    assert response["data"]["arms"] == {"split": arm} and response["data"]["latency_ms"] > 0
    assert response["source"] == "/observe/ingress"
    [feedback] = by_type["feedback"]
    assert feedback["data"] == {
        "request_id": first["request_id"],
        "reward": 1.0,
        "arms": {"split": arm},
    }

    # The figures reach Ray's Prometheus endpoint.
    wait_for(
        lambda: _metric("ray_servegraph_drift_flagged", graph="observe") == 1.0,
        60,
        "servegraph_drift_flagged on the metrics endpoint",
    )
    psi = _metric("ray_servegraph_drift_psi_max", graph="observe", group="input")
    assert psi is not None and psi > 0.2
    wait_for(
        lambda: (_metric("ray_servegraph_inference_log_written_total", graph="observe") or 0) >= 60,
        60,
        "servegraph_inference_log_written on the metrics endpoint",
    )
