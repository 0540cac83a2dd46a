"""The scenario: a one-node graph whose model sleeps per request, scaled by either policy."""

from __future__ import annotations

import time
from typing import Any

#: servegraph's policy for the model node (``autoscaling:`` of the node).
OURS: dict[str, Any] = {
    "slo_p95_ms": 400,
    "target_queue_per_replica": 2,
    "min_replicas": 1,
    "max_replicas": 8,
    "upscale_cooldown_s": 2,
    "downscale_cooldown_s": 10,
    "max_step": 4,
}
#: Ray Serve's default policy, same bounds and load target (``autoscaling_config:``).
RAY_DEFAULT: dict[str, Any] = {"min_replicas": 1, "max_replicas": 8, "target_ongoing_requests": 2}
POLICIES = ("ours", "ray_default")
LABELS = {"ours": "servegraph policy", "ray_default": "Ray Serve default policy"}
COLORS = {"ours": "tab:blue", "ray_default": "tab:orange"}
NODE = "model"
BODY = {"inputs": {"x": [1.0]}}
SAMPLE_EVERY_S = 0.5
#: Pass marks (the issue's claims).
UP_WITHIN_S = 10.0
DOWN_WITHIN_S = 30.0


class SleepModel:
    """A model that takes ``service_ms`` per request and uses no CPU: replicas are cheap."""

    def __init__(self, service_ms: float = 100.0):
        self.service_s = service_ms / 1000.0

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        time.sleep(self.service_s)
        return {"x": payload["x"]}


def graph(policy: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The one-node graph of a run, scaled by ``policy``."""
    node: dict[str, Any] = {
        "name": NODE,
        "kind": "model",
        "runtime": "python",
        # An object: the framework pickles it, by value (worker.py registers this module).
        "model_class": SleepModel,
        "init_kwargs": {"service_ms": spec["service_ms"]},
        "num_cpus": 0,
        "max_ongoing_requests": spec["max_ongoing"],
    }
    if policy == "ours":
        node["autoscaling"] = {**OURS, "slo_p95_ms": spec["slo_ms"]}
    else:
        node["autoscaling_config"] = dict(RAY_DEFAULT)
    tensor = [{"name": "x", "datatype": "FP32", "shape": [-1]}]
    return {
        "name": name,
        "inputs": tensor,
        "outputs": tensor,
        "entry": NODE,
        "nodes": [node],
        "ingress": {"num_cpus": 0},
    }
