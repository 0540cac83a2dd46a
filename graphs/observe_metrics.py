"""The metrics of a graph's ``observe:`` block through ``ray.serve.metrics``: drift and reward
per arm (``servegraph_drift_*``) and the inference log (``servegraph_inference_log_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DriftMetrics"]


class DriftMetrics:
    """``servegraph_drift_*`` and ``servegraph_inference_log_*`` through ``ray.serve.metrics``
    (labels: graph, and node or group; nothing per request)."""

    def __init__(self, graph: str):
        from ray.serve import metrics

        self.graph = graph
        group: Any = ("graph", "group")
        node: Any = ("graph", "node")
        only: Any = ("graph",)
        self.gauges = {
            key: metrics.Gauge(f"servegraph_drift_{key}", description=text, tag_keys=group)
            for key, text in (
                ("psi_max", "Largest per-feature PSI of a tensor in this replica's window."),
                ("js_max", "Largest per-feature Jensen-Shannon distance of a tensor."),
                ("wasserstein_max", "Largest per-feature Wasserstein distance of a tensor."),
                ("drifted_features", "Features of a tensor beyond a drift threshold."),
            )
        }
        self.flagged = metrics.Gauge(
            "servegraph_drift_flagged", description="1 when the graph drifted.", tag_keys=only
        )
        self.reward_mean = metrics.Gauge(
            "servegraph_drift_arm_reward_mean",
            description="Mean reward of an arm (live accuracy with 1/0 rewards).",
            tag_keys=node,
        )
        self.rewards = metrics.Counter(
            "servegraph_drift_arm_rewards", description="Rewards received per arm.", tag_keys=node
        )
        self.drift_dropped = metrics.Counter(
            "servegraph_drift_dropped",
            description="Sampled requests dropped: the drift queue was full.",
            tag_keys=only,
        )
        self.log = {
            key: metrics.Counter(f"servegraph_inference_log_{key}", description=text, tag_keys=only)
            for key, text in (
                ("written", "Inference log events written."),
                ("dropped", "Inference log events dropped: the queue was full."),
                ("failed", "Inference log events the sink failed to take."),
            )
        }
        self._sent = {"drift_dropped": 0, "written": 0, "dropped": 0, "failed": 0}

    def drift(self, report: Mapping[str, Any], dropped: int) -> None:
        tags = {"graph": self.graph}
        self._inc(self.drift_dropped, "drift_dropped", dropped)
        if "tensors" not in report:
            return
        self.flagged.set(float(report["flagged"]), tags=tags)
        for name, tensor in report["tensors"].items():
            group = {**tags, "group": name}
            for key, gauge in self.gauges.items():
                value = tensor["summary"]["drifted" if key == "drifted_features" else key]
                gauge.set(float(value), tags=group)

    def reward(self, arms: Mapping[str, str], quality: Mapping[str, Any]) -> None:
        for router, arm in arms.items():
            tags = {"graph": self.graph, "node": arm}
            self.rewards.inc(tags=tags)
            self.reward_mean.set(quality[router][arm]["reward_mean"], tags=tags)

    def inference_log(self, figures: Mapping[str, Any]) -> None:
        for key, counter in self.log.items():
            self._inc(counter, key, figures[key])

    def _inc(self, counter: Any, key: str, total: int) -> None:
        if total > self._sent[key]:
            counter.inc(total - self._sent[key], tags={"graph": self.graph})
            self._sent[key] = total
