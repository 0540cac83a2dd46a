"""Per-arm, shadow and fallback metrics of a router through ``ray.serve.metrics``, and the
state holder's failures through ``ray.util.metrics``."""

from __future__ import annotations

import logging
from typing import Any

from routing.shadow_compare import ShadowComparator

__all__ = ["RouterMetrics", "StateFailureMetrics"]

log = logging.getLogger(__name__)


class StateFailureMetrics:
    """``servegraph_router_state_failures{router, kind}``: change-log appends (``log``) and
    snapshots (``snapshot``) of a router's state that failed. The counter is created on the
    first failure (``ray.util.metrics``: it works in any Ray actor, and in no Ray process it
    records nothing), and a metric that cannot be recorded never fails the caller."""

    def __init__(self, router: str):
        self.router = router
        self._counter: Any = None

    def failure(self, kind: str) -> None:
        """Count one failure of ``kind`` (``log`` or ``snapshot``)."""
        try:
            if self._counter is None:
                from ray.util import metrics

                tags: Any = ("router", "kind")
                self._counter = metrics.Counter(
                    "servegraph_router_state_failures",
                    description="Router state changes that could not be logged (kind=log) and "
                    "snapshots that could not be written (kind=snapshot).",
                    tag_keys=tags,
                )
            self._counter.inc(tags={"router": self.router, "kind": kind})
        except Exception as exc:  # a metric must never fail the state holder
            log.debug("router %s: failure metric not recorded (%r)", self.router, exc)


class RouterMetrics:
    """Per-arm and shadow metrics through ``ray.serve.metrics`` (Ray's Prometheus endpoint):
    ``servegraph_router_requests{router,arm,outcome}``,
    ``servegraph_router_latency_ms{router,arm}``, ``servegraph_shadow_calls{router,outcome}``,
    ``servegraph_router_policy_fallbacks{router}`` and the gauges
    ``servegraph_shadow_agreement_rate`` / ``servegraph_shadow_mean_abs_diff`` (this replica's
    figures since it started)."""

    def __init__(self, router: str):
        from ray.serve import metrics

        # Ray annotates tag_keys as tuple[str] (one key); any number of keys works.
        arm_tags: Any = ("router", "arm")
        outcome_tags: Any = ("router", "outcome")
        self.router = router
        self.requests = metrics.Counter(
            "servegraph_router_requests",
            description="Requests a router sent to each arm, by outcome (ok or error).",
            tag_keys=(*arm_tags, "outcome"),
        )
        self.latency = metrics.Histogram(
            "servegraph_router_latency_ms",
            description="Latency of each arm as the router saw it (ms).",
            boundaries=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
            tag_keys=arm_tags,
        )
        self.shadow = metrics.Counter(
            "servegraph_shadow_calls",
            description="Shadow calls by outcome: compared, error, timeout, dropped.",
            tag_keys=outcome_tags,
        )
        self.agreement = metrics.Gauge(
            "servegraph_shadow_agreement_rate",
            description="Share of label fields on which the shadow agreed with the primary.",
            tag_keys=("router",),
        )
        self.mad = metrics.Gauge(
            "servegraph_shadow_mean_abs_diff",
            description="Mean absolute difference between shadow and primary numbers.",
            tag_keys=("router",),
        )
        self.fallbacks = metrics.Counter(
            "servegraph_router_policy_fallbacks",
            description="Requests served with the static split because the policy failed.",
            tag_keys=("router",),
        )
        self.outcomes = metrics.Counter(
            "servegraph_router_outcomes",
            description="Requests of an arm that ended neither ok nor in error: cancelled (the "
            "caller went away), shed (the arm's breaker was open), fallback (served by the "
            "router's fallback after the arm failed or was shed).",
            tag_keys=(*arm_tags, "outcome"),
        )
        self.breaker = metrics.Gauge(
            "servegraph_router_breaker_state",
            description="Circuit breaker of an arm in this router replica: 0 closed, "
            "1 half-open, 2 open.",
            tag_keys=arm_tags,
        )
        self._totals = ShadowComparator()

    def fallback(self) -> None:
        self.fallbacks.inc(tags={"router": self.router})

    def request(self, arm: str, ok: bool, latency_ms: float) -> None:
        tags = {"router": self.router, "arm": arm}
        self.requests.inc(tags={**tags, "outcome": "ok" if ok else "error"})
        self.latency.observe(latency_ms, tags=tags)

    def outcome(self, arm: str, outcome: str) -> None:
        """An arm's request that ended cancelled, shed or served by the fallback."""
        self.outcomes.inc(tags={"router": self.router, "arm": arm, "outcome": outcome})

    def breaker_state(self, arm: str, level: int) -> None:
        """An arm's breaker changed state (0 closed, 1 half-open, 2 open)."""
        self.breaker.set(level, tags={"router": self.router, "arm": arm})

    def shadow_call(self, outcome: str, pair: Any = None) -> None:
        self.shadow.inc(tags={"router": self.router, "outcome": outcome})
        if pair is not None:
            self._totals.overall.merge(pair)
            tags = {"router": self.router}
            if self._totals.overall.agreement_rate is not None:
                self.agreement.set(self._totals.overall.agreement_rate, tags=tags)
            if self._totals.overall.mean_abs_diff is not None:
                self.mad.set(self._totals.overall.mean_abs_diff, tags=tags)
