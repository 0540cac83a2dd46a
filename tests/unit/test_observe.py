"""The ingress's observer without Ray: sampled inputs binned and compared off the hot path, a
frozen live window as the reference, rewards per arm, and the inference log's JSONL lines."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from graphs.observe import Observer, Quality
from graphs.spec import GraphSpec


def spec(observe: dict[str, Any]) -> GraphSpec:
    model = {"kind": "model", "runtime": "python", "model_class": "m:M"}
    return GraphSpec.model_validate(
        {
            "name": "g",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
            "entry": "split",
            "nodes": [
                {"name": "split", "kind": "router", "arms": [{"target": "a"}, {"target": "b"}]},
                {"name": "a", **model},
                {"name": "b", **model},
            ],
            "observe": observe,
        }
    )


async def until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``check`` on the event loop until truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out; last: {check()!r}")


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())  # type: ignore[arg-type]


def drift_settings(reference: Any, **extra: Any) -> dict[str, Any]:
    return {
        "reference": reference,
        "sample_rate": 1.0,
        "window": 400,
        "min_samples": 400,
        "every_s": 0.02,
        **extra,
    }


def test_a_shift_is_flagged_against_a_reference_file(tmp_path: str) -> None:
    rng = np.random.default_rng(0)
    path = os.path.join(tmp_path, "ref.npz")
    np.savez(path, x=rng.normal(0, 1, (2000, 4)), label=rng.integers(0, 3, 2000))
    observer = Observer(spec({"drift": drift_settings(path)}), replica="r1", metrics=False)

    def send(x: np.ndarray) -> None:
        for i in range(0, len(x), 20):
            labels = rng.integers(0, 3, 20)
            observer.record(f"id{i}", {"x": x[i : i + 20]}, {"label": labels}, ["split", "a"], 0.01)

    def verdict(rows: int) -> Any:
        drift = observer.report()["drift"]
        ok = drift.get("state") == "comparing" and drift["tensors"]["x"]["rows"] == rows
        return drift if ok and drift["checked_at"] > stamp else None

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        nonlocal stamp
        assert observer.report()["drift"]["state"] == "warming up"
        send(rng.normal(0, 1, (400, 4)))
        calm = await until(lambda: verdict(400))
        stamp = calm["checked_at"]
        shifted = rng.normal(0, 1, (400, 4))
        shifted[:, 2] += 2.0
        send(shifted)
        return calm, await until(lambda: verdict(400))

    stamp = ""
    calm, moved = run(scenario)
    assert calm["flagged"] is False and calm["drifted_features"] == 0
    assert calm["reference"] == path
    assert moved["flagged"] is True
    assert moved["tensors"]["x"]["drifted_features"] == ["x[2]"]
    assert moved["tensors"]["x"]["features"]["x[2]"]["psi"] > 0.2
    assert moved["tensors"]["label"]["summary"]["drifted"] == 0  # labels did not move


def test_a_live_window_becomes_the_reference() -> None:
    settings = drift_settings({"window": 50}, window=100, min_samples=50)
    observer = Observer(spec({"drift": settings}), replica="r1", metrics=False)

    async def scenario() -> dict[str, Any]:
        for i in range(50):  # the reference: 50 requests of one row
            observer.record(f"r{i}", {"x": [[i % 5] * 4]}, {"label": [0]}, ["split", "a"], 0.0)
        await until(lambda: observer.report()["drift"]["state"] == "warming up")
        for i in range(60):
            observer.record(f"s{i}", {"x": [[9] * 4]}, {"label": [0]}, ["split", "a"], 0.0)
        return await until(lambda: observer.report()["drift"].get("flagged"))

    assert run(scenario) is True
    assert observer.report()["drift"]["reference"] == "the first 50 sampled requests"


def test_rewards_are_counted_per_arm() -> None:
    quality = Quality(spec({}))
    assert quality.served_arms(["split", "b"]) == {"split": "b"}
    for arm, reward in ((0, 1.0), (0, 0.0), (1, 1.0), (7, 1.0)):  # arm 7 is no arm
        quality.reward([("split", arm)], reward)
    assert quality.describe() == {
        "split": {"a": {"rewards": 2, "reward_mean": 0.5}, "b": {"rewards": 1, "reward_mean": 1.0}}
    }


def test_the_log_writes_pairs_and_rewards_as_cloudevents(tmp_path: str) -> None:
    observe = {"log": {"path": str(tmp_path), "sample_rate": 1.0}}
    observer = Observer(spec(observe), replica="r1", metrics=False)

    async def scenario() -> dict[str, Any]:
        observer.record("req-1", {"x": np.ones((1, 4))}, {"label": [2]}, ["split", "b"], 0.0123)
        observer.feedback("req-1", [("split", 1)], 1.0)
        return await until(lambda: observer.report()["log"]["written"] == 3 and observer.report())

    report = run(scenario)
    assert report["log"] == {
        "sink": os.path.join(tmp_path, "g-r1.jsonl"),
        "written": 3,
        "dropped": 0,
        "failed": 0,
        "pending": 0,
    }
    assert report["quality"] == {"split": {"b": {"rewards": 1, "reward_mean": 1.0}}}
    with open(os.path.join(tmp_path, "g-r1.jsonl")) as f:
        request, response, feedback = (json.loads(line) for line in f)
    assert request["type"] == "org.servegraph.inference.request"
    assert request["data"] == {"request_id": "req-1", "inputs": {"x": [[1.0] * 4]}}
    assert response["data"]["arms"] == {"split": "b"} and response["data"]["latency_ms"] == 12.3
    assert response["data"]["outputs"] == {"label": [2]}
    assert feedback["type"] == "org.servegraph.inference.feedback"
    assert feedback["data"] == {"request_id": "req-1", "reward": 1.0, "arms": {"split": "b"}}
    assert {e["source"] for e in (request, response, feedback)} == {"/g/ingress"}
    assert {e["requestid"] for e in (request, response, feedback)} == {"req-1"}


def test_an_observer_needs_an_observe_block() -> None:
    with pytest.raises(ValueError, match="graph 'g' has no observe block"):
        Observer(spec({}).model_copy(update={"observe": None}), replica="r1", metrics=False)
