"""A canary's records: the events of its history and the deltas replicas send.

- :class:`CanaryEvent`: one transition (start, advance, pause, resume, promote, rollback), with
  its reason and the step's figures.
- :class:`CanaryDelta`: what one replica recorded since its last sync, tagged with the canary run
  and step it was recorded in, for :meth:`routing.canary.Canary.apply`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from routing.arm_stats import ArmStats

__all__ = [
    "CANARY_ARMS",
    "CanaryAction",
    "CanaryDelta",
    "CanaryEvent",
    "CanaryStatus",
    "get_arm",
    "new_window",
]

CanaryStatus = Literal["ramping", "paused", "promoted", "rolled_back"]
CanaryAction = Literal["start", "advance", "pause", "resume", "promote", "rollback"]
#: The two arms of a canary, in router order (index 0 is stable, 1 the candidate).
CANARY_ARMS = ("stable", "candidate")


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
    arms: dict[str, ArmStats] = field(default_factory=lambda: new_window())

    def record(self, arm: str, ok: bool, latency_ms: float) -> None:
        """Record one request served by ``arm`` (``"stable"`` or ``"candidate"``)."""
        get_arm(self.arms, arm).record(ok, latency_ms)

    def record_reward(self, arm: str, reward: float) -> None:
        """Record one reward for ``arm``."""
        get_arm(self.arms, arm).record_reward(reward)

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


def get_arm(arms: dict[str, ArmStats], arm: str) -> ArmStats:
    """``arms[arm]``, or a ValueError naming the canary's arms."""
    try:
        return arms[arm]
    except KeyError:
        raise ValueError(f"unknown canary arm {arm!r}; use 'stable' or 'candidate'") from None


def new_window() -> dict[str, ArmStats]:
    """Empty figures for both arms."""
    return {name: ArmStats() for name in CANARY_ARMS}
