"""Canary rollout: a pure state machine that ramps a candidate arm up against a stable one.

The candidate's share of traffic goes through the configured steps (e.g. 1, 5, 25, 50, 100 %).
A step is passed once it has been held for ``min_step_seconds`` and the candidate has served
``min_candidate_requests`` in it; passing the last step promotes the candidate. Gates compare the
candidate with the stable arm over the step (error rate, p95 latency, mean reward when feedback
arrives): a breach rolls back at once (candidate weight 0) and the reason and figures are kept
in the history. The gates are checked as soon as the candidate has enough requests in the step,
also while the ramp is paused: pausing freezes progress, not safety.

Nothing here reads a clock: ``now`` (seconds, any monotonic origin) is passed in. Replicas record
into a :class:`~routing.canary_events.CanaryDelta` and the router's shared state folds deltas in
with :meth:`Canary.apply`, then calls :meth:`Canary.evaluate`; :meth:`Canary.to_dict` /
:meth:`Canary.from_dict` snapshot the whole state (JSON). The configuration is
:class:`~routing.config.CanaryConfig`; the gates' arithmetic is in :mod:`routing.canary_gates`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nodes.errors import GraphError
from routing.arm_stats import ArmStats
from routing.canary_events import (
    CANARY_ARMS,
    CanaryAction,
    CanaryDelta,
    CanaryEvent,
    CanaryStatus,
    get_arm,
    new_window,
)
from routing.canary_gates import arm_figures, gate_breaches
from routing.config import CanaryConfig

__all__ = ["Canary", "CanaryStateError"]

#: Events kept in the history (the oldest are dropped first).
MAX_HISTORY = 200
SNAPSHOT_VERSION = 1


class CanaryStateError(GraphError, ValueError):
    """A control action that the canary's status does not allow (HTTP 409)."""

    status_code = 409


class Canary:
    """The canary state machine of one router (stable arm 0, candidate arm 1).

    Args:
        config: steps, hold time, request minimums and gates.
        now: start time; the first step's hold starts here.
    """

    def __init__(self, config: CanaryConfig, now: float):
        self.config = config
        self.status: CanaryStatus = "ramping"
        self.stage = 0
        self.started_at = now
        self.step_started_at = now
        #: Figures of the current step, per arm.
        self.window = new_window()
        #: Figures since the start, per arm (the stable baseline when the step has too few).
        self.overall = new_window()
        self.history: list[CanaryEvent] = []
        self._event(now, "start", "canary started", automatic=True)

    # --- traffic ---------------------------------------------------------------------------

    @property
    def candidate_percent(self) -> float:
        """The candidate's share of traffic now, in percent."""
        if self.status == "promoted":
            return 100.0
        if self.status == "rolled_back":
            return 0.0
        return self.config.steps[self.stage]

    @property
    def weights(self) -> list[float]:
        """``[stable, candidate]`` weights (sum 1), for the router's weighted or sticky split."""
        candidate = self.candidate_percent / 100
        return [1.0 - candidate, candidate]

    @property
    def active(self) -> bool:
        """True while ramping or paused (neither promoted nor rolled back)."""
        return self.status in ("ramping", "paused")

    def record(self, arm: str, ok: bool, latency_ms: float) -> None:
        """Record one request served by ``arm`` (``"stable"`` or ``"candidate"``)."""
        get_arm(self.overall, arm).record(ok, latency_ms)
        if self.active:
            get_arm(self.window, arm).record(ok, latency_ms)

    def record_reward(self, arm: str, reward: float) -> None:
        """Record one reward for ``arm``."""
        get_arm(self.overall, arm).record_reward(reward)
        if self.active:
            get_arm(self.window, arm).record_reward(reward)

    def new_delta(self) -> CanaryDelta:
        """An empty delta tagged with this canary's run and step, for a replica to fill."""
        return CanaryDelta(self.started_at, self.stage)

    def apply(self, delta: CanaryDelta) -> bool:
        """Fold a replica's delta in; False (and nothing changed) if it is from another run.

        A delta recorded in an earlier step counts towards the overall figures only, so a
        step is judged on traffic it actually served.
        """
        if delta.run != self.started_at:
            return False
        in_step = self.active and delta.stage == self.stage
        for name in CANARY_ARMS:
            stats = get_arm(delta.arms, name)
            self.overall[name].merge(stats)
            if in_step:
                self.window[name].merge(stats)
        return True

    # --- decisions -------------------------------------------------------------------------

    def evaluate(self, now: float) -> list[CanaryEvent]:
        """Check the gates and the step's minimums; roll back, advance or promote.

        Returns:
            The events this call caused (empty when nothing changed).
        """
        if not self.active:
            return []
        config = self.config
        if self.window["candidate"].requests < config.min_candidate_requests:
            return []
        figures = self.step_figures(now)
        if figures["breaches"]:
            reason = "; ".join(b["message"] for b in figures["breaches"])
            return [self._rollback(now, f"gate breached: {reason}", figures, automatic=True)]
        if self.status == "paused" or now - self.step_started_at < config.min_step_seconds:
            return []
        if self.stage == len(config.steps) - 1:
            self.status = "promoted"
            return [self._event(now, "promote", "passed the last step", figures, automatic=True)]
        passed = config.steps[self.stage]
        self.stage += 1
        self._new_step(now)
        reason = f"passed step {self.stage - 1} ({passed:g} %)"
        return [self._event(now, "advance", reason, figures, automatic=True)]

    def step_figures(self, now: float) -> dict[str, Any]:
        """Both arms' figures over the current step, the baselines used and any gate breach."""
        config, gates = self.config, self.config.gates
        cand = self.window["candidate"]
        base, base_from = self._baseline(lambda s: s.requests >= config.min_stable_requests)
        rbase, rbase_from = self._baseline(lambda s: s.reward.count >= gates.min_reward_count)
        breaches = gate_breaches(gates, cand, base, rbase)
        return {
            "stage": self.stage,
            "candidate_percent": self.candidate_percent,
            "step_seconds": now - self.step_started_at,
            "candidate": arm_figures(cand),
            "stable": arm_figures(self.window["stable"]),
            "baseline": base_from,
            "baseline_figures": arm_figures(base) if base is not None else None,
            "reward_baseline": rbase_from,
            "breaches": breaches,
        }

    def _baseline(self, enough: Callable[[ArmStats], bool]) -> tuple[ArmStats | None, str | None]:
        """The stable figures to compare with: this step's if enough, else the whole run's."""
        if enough(self.window["stable"]):
            return self.window["stable"], "step"
        if enough(self.overall["stable"]):
            return self.overall["stable"], "overall"
        return None, None

    # --- control ---------------------------------------------------------------------------

    def pause(self, now: float, reason: str = "paused by operator") -> CanaryEvent:
        """Hold the current step (the gates keep watching). Only while ramping."""
        self._require("pause", ("ramping",))
        self.status = "paused"
        return self._event(now, "pause", reason, self.step_figures(now), automatic=False)

    def resume(self, now: float, reason: str = "resumed by operator") -> CanaryEvent:
        """Continue a paused ramp; time already spent in the step still counts."""
        self._require("resume", ("paused",))
        self.status = "ramping"
        return self._event(now, "resume", reason, self.step_figures(now), automatic=False)

    def promote(self, now: float, reason: str = "promoted by operator") -> CanaryEvent:
        """Send all traffic to the candidate now. Only while ramping or paused."""
        self._require("promote", ("ramping", "paused"))
        figures = self.step_figures(now)
        self.status = "promoted"
        return self._event(now, "promote", reason, figures, automatic=False)

    def rollback(self, now: float, reason: str = "rolled back by operator") -> CanaryEvent:
        """Send all traffic to the stable arm now (also after a promotion)."""
        self._require("rollback", ("ramping", "paused", "promoted"))
        return self._rollback(now, reason, self.step_figures(now), automatic=False)

    def _require(self, action: str, allowed: tuple[CanaryStatus, ...]) -> None:
        if self.status not in allowed:
            raise CanaryStateError(
                f"cannot {action} a canary that is {self.status}; "
                f"{action} needs status {' or '.join(allowed)}"
            )

    def _rollback(
        self, now: float, reason: str, figures: dict[str, Any], *, automatic: bool
    ) -> CanaryEvent:
        self.status = "rolled_back"
        return self._event(now, "rollback", reason, figures, automatic=automatic)

    def _new_step(self, now: float) -> None:
        self.step_started_at = now
        self.window = new_window()

    def _event(
        self,
        now: float,
        action: CanaryAction,
        reason: str,
        figures: dict[str, Any] | None = None,
        *,
        automatic: bool,
    ) -> CanaryEvent:
        event = CanaryEvent(
            now,
            action,
            self.status,
            self.stage,
            self.candidate_percent,
            reason,
            figures or {},
            automatic,
        )
        self.history.append(event)
        del self.history[:-MAX_HISTORY]
        return event

    # --- views and snapshots ---------------------------------------------------------------

    def state(self, now: float) -> dict[str, Any]:
        """A compact view for ``GET /<graph>/graph``: status, step, weights, figures, last event."""
        return {
            "status": self.status,
            "stage": self.stage,
            "steps": list(self.config.steps),
            "candidate_percent": self.candidate_percent,
            "weights": self.weights,
            "step": self.step_figures(now),
            "last_event": self.history[-1].to_dict() if self.history else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON (config included), for snapshots."""
        return {
            "version": SNAPSHOT_VERSION,
            "config": self.config.model_dump(mode="json"),
            "status": self.status,
            "stage": self.stage,
            "started_at": self.started_at,
            "step_started_at": self.step_started_at,
            "window": {n: s.to_dict() for n, s in self.window.items()},
            "overall": {n: s.to_dict() for n, s in self.overall.items()},
            "history": [e.to_dict() for e in self.history],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Canary:
        """Rebuild a canary from :meth:`to_dict`'s output."""
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(
                f"unsupported canary snapshot version {data.get('version')!r} "
                f"(expected {SNAPSHOT_VERSION})"
            )
        canary = cls.__new__(cls)
        canary.config = CanaryConfig.model_validate(data["config"])
        canary.status = data["status"]
        canary.stage = int(data["stage"])
        canary.started_at = float(data["started_at"])
        canary.step_started_at = float(data["step_started_at"])
        canary.window = {n: ArmStats.from_dict(s) for n, s in data["window"].items()}
        canary.overall = {n: ArmStats.from_dict(s) for n, s in data["overall"].items()}
        canary.history = [CanaryEvent.from_dict(e) for e in data["history"]]
        if canary.status not in ("ramping", "paused", "promoted", "rolled_back"):
            raise ValueError(f"unknown canary status {canary.status!r}")
        if not 0 <= canary.stage < len(canary.config.steps):
            raise ValueError(f"stage {canary.stage} is outside the config's steps")
        return canary

    def __repr__(self) -> str:
        return (
            f"Canary(status={self.status!r}, stage={self.stage}, "
            f"candidate_percent={self.candidate_percent:g})"
        )
