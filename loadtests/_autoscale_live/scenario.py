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
    "max_step": 8,  # no step limit below max_replicas, as Ray's policies have none
}
#: Ray Serve's default policy, same bounds and load target (``autoscaling_config:``).
RAY_DEFAULT: dict[str, Any] = {"min_replicas": 1, "max_replicas": 8, "target_ongoing_requests": 2}
#: The same policy as a careful user tunes it: metrics every 0.5 s over 2 s, a 3 s upscale
#: delay, the downscale delay matched to ours.
RAY_TUNED: dict[str, Any] = {
    **RAY_DEFAULT,
    "metrics_interval_s": 0.5,
    "look_back_period_s": 2.0,
    "upscale_delay_s": 3.0,
    "downscale_delay_s": OURS["downscale_cooldown_s"],
}
POLICIES = ("ours", "ray_default", "ray_tuned")
LABELS = {
    "ours": "servegraph policy",
    "ray_default": "Ray Serve default policy",
    "ray_tuned": "Ray Serve default policy, tuned",
}
COLORS = {"ours": "tab:blue", "ray_default": "tab:orange", "ray_tuned": "tab:green"}
#: Pass marks against the baselines (the issue's targets): SLO-met windows at least this many
#: points above Ray's default at no more of its replica-seconds; against the tuned policy,
#: more SLO-met windows at no more than this many times its replica-seconds.
SLO_POINTS_OVER_DEFAULT = 20.0
REPLICA_SECONDS_VS_TUNED = 1.1
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
        node["autoscaling_config"] = dict(RAY_TUNED if policy == "ray_tuned" else RAY_DEFAULT)
    tensor = [{"name": "x", "datatype": "FP32", "shape": [-1]}]
    return {
        "name": name,
        "inputs": tensor,
        "outputs": tensor,
        "entry": NODE,
        "nodes": [node],
        "ingress": {"num_cpus": 0},
    }
