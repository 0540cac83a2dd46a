"""The call guard of a replica (:class:`nodes.resilience.CallGuard`) with its metrics and logs.

Breaker transitions and retries show on Ray's metrics endpoint
(``servegraph_breaker_state{deployment, node}``: 0 closed, 1 half-open, 2 open;
``servegraph_retries{deployment, node, kind}``; in a replica Ray Serve adds ``deployment``,
``replica`` and ``application``) and in the replica's log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from nodes.breaker import BREAKER_LEVELS, BreakerState
from nodes.gauges import keep_gauge
from nodes.resilience import CallGuard, CallSettings

__all__ = ["call_guard", "call_settings"]

log = logging.getLogger("servegraph")


def call_settings(nodes: Any) -> dict[str, CallSettings]:
    """How each node of a graph is called (its timeout, retries, breaker), by name."""
    return {node.name: CallSettings.of(node) for node in nodes}


class _GuardMetrics:
    def __init__(self, deployment: str):
        from ray.serve import metrics

        self.deployment = deployment
        node: Any = ("node",)
        self.state = metrics.Gauge(
            "servegraph_breaker_state",
            description="Circuit breaker of calls to a node, as one caller deployment's replica "
            "sees it: 0 closed, 1 half-open, 2 open.",
            tag_keys=node,
        )
        self.retries = metrics.Counter(
            "servegraph_retries",
            description="Calls to a node retried, by failure kind.",
            tag_keys=(*node, "kind"),
        )

    def breaker(self, node: str, state: BreakerState) -> None:
        level = BREAKER_LEVELS[state]
        keep_gauge(self.state, level, {"node": node})
        logger = log.warning if state == "open" else log.info
        logger("deployment %s: circuit breaker of node %s is %s", self.deployment, node, state)

    def retry(self, node: str, kind: str) -> None:
        self.retries.inc(tags={"node": node, "kind": kind})


def call_guard(settings: Mapping[str, CallSettings], deployment: str) -> CallGuard:
    """The guard a replica of ``deployment`` calls other nodes through, reporting its breaker
    transitions and retries."""
    metrics = _GuardMetrics(deployment)
    return CallGuard(settings, on_breaker=metrics.breaker, on_retry=metrics.retry)
