"""Per-arm, shadow and fallback metrics of a router through ``ray.serve.metrics``, and the
state holder's failures through ``ray.util.metrics``."""

from __future__ import annotations

import logging
from typing import Any

from nodes.gauges import keep_gauge
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
    ``servegraph_router_policy_fallbacks{router}``, the gauges
    ``servegraph_shadow_agreement_rate`` / ``servegraph_shadow_mean_abs_diff`` (this replica's
    figures since it started), the policy's view (``servegraph_router_arm_probability{router,
    arm}``, ``servegraph_router_canary_stage{router}``), rewards
    (``servegraph_router_reward{router, arm}``) and failed state syncs
    (``servegraph_router_sync_failures{router}``). Every series also carries ``graph``.

    Args:
        router: the router node's name.
        graph: the graph's name.
    """

    def __init__(self, router: str, graph: str = ""):
        from ray.serve import metrics

        # Ray annotates tag_keys as tuple[str] (one key); any number of keys works.
        router_tags: Any = ("graph", "router")
        arm_tags: Any = (*router_tags, "arm")
        self.router = router
        self.requests = metrics.Counter(
            "servegraph_router_requests",
            description="Requests a router sent to each arm, by outcome (ok or error).",
            tag_keys=(*arm_tags, "outcome"),
        )
        self.latency = metrics.Histogram(
            "servegraph_router_latency_ms",
            description="Latency of each arm as the router saw it (ms).",
            boundaries=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 30000, 120000],
            tag_keys=arm_tags,
        )
        self.shadow = metrics.Counter(
            "servegraph_shadow_calls",
            description="Shadow calls by outcome: compared, error, timeout, dropped.",
            tag_keys=(*router_tags, "outcome"),
        )
        self.agreement = metrics.Gauge(
            "servegraph_shadow_agreement_rate",
            description="Share of label fields on which the shadow agreed with the primary.",
            tag_keys=router_tags,
        )
        self.mad = metrics.Gauge(
            "servegraph_shadow_mean_abs_diff",
            description="Mean absolute difference between shadow and primary numbers.",
            tag_keys=router_tags,
        )
        self.fallbacks = metrics.Counter(
            "servegraph_router_policy_fallbacks",
            description="Requests served with the static split because the policy failed.",
            tag_keys=router_tags,
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
        self.probability = metrics.Gauge(
            "servegraph_router_arm_probability",
            description="Probability the router's policy gives each arm: its split's weight "
            "(weighted, A/B, canary, blue/green); for a bandit, the share of this replica's "
            "requests it sent to the arm since the state sync before.",
            tag_keys=arm_tags,
        )
        self.stage = metrics.Gauge(
            "servegraph_router_canary_stage",
            description="Step of a canary router's ramp (0: the first step).",
            tag_keys=router_tags,
        )
        self.reward = metrics.Histogram(
            "servegraph_router_reward",
            description="Rewards applied to an arm's decisions (sum / count: mean reward).",
            boundaries=[0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0],
            tag_keys=arm_tags,
        )
        self.sync_failures = metrics.Counter(
            "servegraph_router_sync_failures",
            description="State syncs of a router replica with its state holder that failed.",
            tag_keys=router_tags,
        )
        self._tags = {"graph": graph, "router": router}
        self._chosen: dict[str, int] = {}  # a bandit's requests per arm since the last view
        self._totals = ShadowComparator()

    def _arm(self, arm: str) -> dict[str, str]:
        return {**self._tags, "arm": arm}

    def fallback(self) -> None:
        self.fallbacks.inc(tags=dict(self._tags))

    def request(self, arm: str, ok: bool, latency_ms: float) -> None:
        tags = self._arm(arm)
        self.requests.inc(tags={**tags, "outcome": "ok" if ok else "error"})
        self.latency.observe(latency_ms, tags=tags)
        self._chosen[arm] = self._chosen.get(arm, 0) + 1

    def outcome(self, arm: str, outcome: str) -> None:
        """An arm's request that ended cancelled, shed or served by the fallback."""
        self.outcomes.inc(tags={**self._arm(arm), "outcome": outcome})

    def breaker_state(self, arm: str, level: int) -> None:
        """An arm's breaker changed state (0 closed, 1 half-open, 2 open)."""
        keep_gauge(self.breaker, level, self._arm(arm))

    def policy(
        self, arms: list[str], weights: list[float], bandit: bool, stage: int | None
    ) -> None:
        """The policy's view after a state sync: the split's ``weights``, or for a ``bandit``
        the shares of its choices since the view before; a canary's ``stage``."""
        if bandit:
            total = sum(self._chosen.get(arm, 0) for arm in arms)
            weights = [self._chosen.get(arm, 0) / total if total else 0.0 for arm in arms]
            if not total:
                return  # nothing chosen since the last view: keep the last shares
            self._chosen = {}
        else:
            total_weight = sum(weights) or 1.0
            weights = [w / total_weight for w in weights]
        for arm, weight in zip(arms, weights):
            keep_gauge(self.probability, weight, self._arm(arm))
        if stage is not None:
            keep_gauge(self.stage, stage, self._tags)

    def rewarded(self, arm: str, reward: float) -> None:
        """A reward was applied to a decision for ``arm``."""
        self.reward.observe(reward, tags=self._arm(arm))

    def sync_failed(self) -> None:
        """A state sync of this replica failed."""
        self.sync_failures.inc(tags=dict(self._tags))

    def shadow_call(self, outcome: str, pair: Any = None) -> None:
        self.shadow.inc(tags={**self._tags, "outcome": outcome})
        if pair is not None:
            self._totals.overall.merge(pair)
            if self._totals.overall.agreement_rate is not None:
                keep_gauge(self.agreement, self._totals.overall.agreement_rate, self._tags)
            if self._totals.overall.mean_abs_diff is not None:
                keep_gauge(self.mad, self._totals.overall.mean_abs_diff, self._tags)
