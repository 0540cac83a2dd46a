"""Canary rollout: a pure state machine that ramps a candidate arm up against a stable one.

The candidate's share of traffic goes through the configured steps (e.g. 1, 5, 25, 50, 100 %).
A step is passed once it has been held for ``min_step_seconds`` and the candidate has served
``min_candidate_requests`` in it; passing the last step promotes the candidate. Gates compare the
candidate with the stable arm over the step (error rate, p95 latency, mean reward when feedback
arrives): a breach rolls back at once (candidate weight 0) and the reason and figures are kept
in the history. The gates are checked as soon as the candidate has enough requests in the step,
also while the ramp is paused: pausing freezes progress, not safety.

Nothing here reads a clock: ``now`` (seconds, any monotonic origin) is passed in. Replicas record
into a :class:`CanaryDelta` and the router's shared state folds deltas in with
:meth:`Canary.apply`, then calls :meth:`Canary.evaluate`; :meth:`Canary.to_dict` /
:meth:`Canary.from_dict` snapshot the whole state (JSON).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from graphs.errors import GraphError
from routing.report import ArmStats

__all__ = [
    "CANARY_ARMS",
    "Canary",
    "CanaryConfig",
    "CanaryDelta",
    "CanaryEvent",
    "CanaryGates",
    "CanaryStateError",
    "CanaryStatus",
]

CanaryStatus = Literal["ramping", "paused", "promoted", "rolled_back"]
CanaryAction = Literal["start", "advance", "pause", "resume", "promote", "rollback"]
#: The two arms of a canary, in router order (index 0 is stable, 1 the candidate).
CANARY_ARMS = ("stable", "candidate")
#: Events kept in the history (the oldest are dropped first).
MAX_HISTORY = 200
SNAPSHOT_VERSION = 1


class CanaryStateError(GraphError, ValueError):
    """A control action that the canary's status does not allow (HTTP 409)."""

    status_code = 409


class CanaryGates(BaseModel):
    """Limits the candidate must stay within, compared with the stable arm over each step.

    Every gate is optional (None switches it off).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_error_rate: float | None = Field(
        None, ge=0, le=1, description="Highest error rate the candidate may have in a step."
    )
    max_error_rate_delta: float | None = Field(
        0.05,
        ge=0,
        le=1,
        description="Most the candidate's error rate may exceed the stable arm's, in absolute "
        "terms (0.05: 1 % stable allows up to 6 % candidate).",
    )
    max_p95_ratio: float | None = Field(
        1.5, gt=0, description="Highest candidate p95 latency as a multiple of the stable p95."
    )
    min_reward_delta: float | None = Field(
        None,
        description="Lowest candidate mean reward minus the stable mean reward (e.g. -0.02: "
        "at most 0.02 worse). Checked once both arms have min_reward_count rewards.",
    )
    min_reward_count: int = Field(
        30, ge=1, description="Rewards each arm needs before the reward gate is checked."
    )


class CanaryConfig(BaseModel):
    """How a canary ramps and what rolls it back.

    Example:
        >>> CanaryConfig(steps=[10, 50, 100], min_step_seconds=300).steps
        [10.0, 50.0, 100.0]
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: list[float] = Field(
        default_factory=lambda: [1.0, 5.0, 25.0, 50.0, 100.0],
        min_length=1,
        description="Candidate traffic share (percent, in (0, 100], increasing) of each step.",
    )
    min_step_seconds: float = Field(
        60.0, ge=0, description="Least time each step is held before the next one."
    )
    min_candidate_requests: int = Field(
        100,
        ge=1,
        description="Requests the candidate must serve in a step before the gates judge it "
        "and before the step can pass.",
    )
    min_stable_requests: int = Field(
        100,
        ge=1,
        description="Stable requests in the step needed to compare against the step's own "
        "figures; with fewer (e.g. at 100 %), the stable arm's figures over the whole canary "
        "are used, and with fewer still the relative gates are skipped.",
    )
    gates: CanaryGates = Field(
        default_factory=CanaryGates, description="Limits whose breach rolls the candidate back."
    )

    @field_validator("steps")
    @classmethod
    def _steps_increase(cls, steps: list[float]) -> list[float]:
        if any(not 0 < s <= 100 for s in steps):
            raise ValueError(f"every step must be a percentage in (0, 100], got {steps}")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"steps must increase strictly, got {steps} (e.g. [1, 5, 25, 100])")
        return steps


@dataclass(frozen=True)
class CanaryEvent:
    """One transition of a canary.

    Attributes:
        at: when it happened (the ``now`` passed in).
        action: start, advance, pause, resume, promote or rollback.
        status: the status after the event.
        stage: the step index after the event.
        candidate_percent: the candidate's traffic share after the event.
        reason: why (a gate breach names the gate, the figure and the limit).
        figures: the step's figures for both arms, and the breaches if any.
        automatic: True when the state machine acted on its own, False for a control call.
    """

    at: float
    action: CanaryAction
    status: CanaryStatus
    stage: int
    candidate_percent: float
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)
    automatic: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CanaryEvent:
        """Rebuild from :meth:`to_dict`'s output."""
        return cls(**dict(data))


@dataclass
class CanaryDelta:
    """What one replica recorded since its last sync, tagged with the step it was recorded in.

    Attributes:
        run: ``started_at`` of the canary the replica saw (tells a restarted canary apart).
        stage: the step index the replica saw.
        arms: per-arm figures (``"stable"``, ``"candidate"``).
    """

    run: float
    stage: int
    arms: dict[str, ArmStats] = field(default_factory=lambda: _new_window())

    def record(self, arm: str, ok: bool, latency_ms: float) -> None:
        """Record one request served by ``arm`` (``"stable"`` or ``"candidate"``)."""
        _arm(self.arms, arm).record(ok, latency_ms)

    def record_reward(self, arm: str, reward: float) -> None:
        """Record one reward for ``arm``."""
        _arm(self.arms, arm).record_reward(reward)

    @property
    def empty(self) -> bool:
        """True when nothing was recorded (no need to send it)."""
        return all(a.requests == 0 and a.reward.count == 0 for a in self.arms.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        arms = {n: a.to_dict() for n, a in self.arms.items()}
        return {"run": self.run, "stage": self.stage, "arms": arms}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CanaryDelta:
        """Rebuild from :meth:`to_dict`'s output."""
        arms = {n: ArmStats.from_dict(a) for n, a in data["arms"].items()}
        return cls(float(data["run"]), int(data["stage"]), arms)


def _arm(arms: dict[str, ArmStats], arm: str) -> ArmStats:
    try:
        return arms[arm]
    except KeyError:
        raise ValueError(f"unknown canary arm {arm!r}; use 'stable' or 'candidate'") from None


def _new_window() -> dict[str, ArmStats]:
    return {name: ArmStats() for name in CANARY_ARMS}


def _figures(stats: ArmStats) -> dict[str, Any]:
    return {
        "requests": stats.requests,
        "errors": stats.errors,
        "error_rate": stats.error_rate,
        "p95_ms": stats.latency.quantile(0.95),
        "reward_count": stats.reward.count,
        "reward_mean": stats.reward.mean if stats.reward.count else None,
    }


def _breaches(
    gates: CanaryGates, cand: ArmStats, base: ArmStats | None, rbase: ArmStats | None
) -> list[dict[str, Any]]:
    """The gates the candidate breaches against the baselines (None: not enough data)."""
    checks: list[tuple[str, float, str]] = []
    rate = cand.error_rate
    if rate is not None:
        checks.append(("max_error_rate", rate, "candidate error rate"))
        if base is not None:
            base_rate = base.error_rate or 0.0
            text = f"candidate error rate {rate:.3f} - stable's {base_rate:.3f}"
            checks.append(("max_error_rate_delta", rate - base_rate, text))
    p95 = cand.latency.quantile(0.95)
    base_p95 = base.latency.quantile(0.95) if base is not None else None
    if p95 is not None and base_p95:
        text = f"candidate p95 {p95:.1f} ms / stable's {base_p95:.1f} ms"
        checks.append(("max_p95_ratio", p95 / base_p95, text))
    if rbase is not None and cand.reward.count >= gates.min_reward_count:
        diff = cand.reward.mean - rbase.reward.mean
        text = f"candidate mean reward {cand.reward.mean:.3f} - stable's {rbase.reward.mean:.3f}"
        checks.append(("min_reward_delta", diff, text))
    found = []
    for gate, observed, text in checks:
        limit = getattr(gates, gate)
        if limit is None:
            continue
        floor = gate.startswith("min_")
        if observed < limit if floor else observed > limit:
            message = f"{text} = {observed:.3f} {'<' if floor else '>'} {gate} {limit:g}"
            found.append({"gate": gate, "limit": limit, "observed": observed, "message": message})
    return found


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
        self.window = _new_window()
        #: Figures since the start, per arm (the stable baseline when the step has too few).
        self.overall = _new_window()
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
        _arm(self.overall, arm).record(ok, latency_ms)
        if self.active:
            _arm(self.window, arm).record(ok, latency_ms)

    def record_reward(self, arm: str, reward: float) -> None:
        """Record one reward for ``arm``."""
        _arm(self.overall, arm).record_reward(reward)
        if self.active:
            _arm(self.window, arm).record_reward(reward)

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
            stats = _arm(delta.arms, name)
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
        breaches = _breaches(gates, cand, base, rbase)
        return {
            "stage": self.stage,
            "candidate_percent": self.candidate_percent,
            "step_seconds": now - self.step_started_at,
            "candidate": _figures(cand),
            "stable": _figures(self.window["stable"]),
            "baseline": base_from,
            "baseline_figures": _figures(base) if base is not None else None,
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
        self.window = _new_window()

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
