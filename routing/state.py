"""The one authoritative state of a router, shared by its replicas.

:class:`RouterState` (pure) holds the runtime weights, canary, bandit posterior, experiment
figures, shadow comparison, blue/green arm and replay guard of one router. Replicas fold their
figures in with :meth:`RouterState.sync` (batched; a resent delta counts once) and get back the
view they decide on; rewards (:meth:`RouterState.feedback`) and operator actions
(:meth:`RouterState.control`) land here directly. Every change is a deterministic function of its
inputs and ``now``, so replaying a logged change reproduces it exactly, and a change that raises
changes nothing: :mod:`routing.store` logs each change before applying it.

Feedback cannot poison it: rewards outside the router's ``reward_range``, LinUCB contexts outside
``feature_range`` and updates that would make a statistic non-finite are refused (422) before
anything changes; a snapshot poisoned by an older version loads with the bad figures reset.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from nodes.errors import GraphError, RequestValidationError
from routing._guards import (
    MAX_REASON_CHARS,
    REWARD_RANGE,
    check_decision,
    check_reason,
    check_reward,
    check_weights,
    reward_range,
    unpoisoned,
)
from routing.bandits import NonFiniteStateError, make_bandit
from routing.bandits._base import Bandit
from routing.bluegreen import BlueGreen
from routing.canary import Canary, CanaryStateError
from routing.canary_events import CANARY_ARMS, CanaryDelta
from routing.keys import STATE_DIR_ENV, config_hash, state_dir
from routing.ledger import ReplicaLedger
from routing.replay import ReplayGuard
from routing.report import ExperimentStats
from routing.shadow_compare import ShadowComparator
from routing.spec import RouterNode
from routing.summary import experiment_report, router_summary, shadow_report
from routing.tokens import Decision, FeedbackClaims

__all__ = [
    "ACTIONS",
    "MAX_REASON_CHARS",
    "REWARD_RANGE",
    "STATE_DIR_ENV",
    "RouterState",
    "UnknownActionError",
    "config_hash",
    "reward_range",
    "state_dir",
]

log = logging.getLogger(__name__)

#: Control actions and the policies that take them.
ACTIONS = {
    "weights": ("weighted", "ab"),
    "pause": ("canary",),
    "resume": ("canary",),
    "promote": ("canary",),
    "rollback": ("canary", "blue_green"),
    "switch": ("blue_green",),
    "reset": ("weighted", "ab", "canary", "bandit", "blue_green"),
}


class UnknownActionError(GraphError, ValueError):
    """A control action that does not exist (HTTP 404)."""

    status_code = 404


class RouterState:
    """The authoritative state of one router (pure: ``now`` is passed in, RNG injected).

    Args:
        spec: the router node.
        now: creation time (the canary's start), wall-clock seconds.
        rng: random source of the bandit (only used for ties on this side).
    """

    def __init__(self, spec: RouterNode, now: float, rng: random.Random | None = None):
        self.spec = spec
        self.hash = config_hash(spec)
        self.labels = [arm.label for arm in spec.arms]
        self.weights = spec.weights()
        self.canary = Canary(spec.canary, now) if spec.canary is not None else None
        self.bandit: Bandit | None = (
            make_bandit(spec.bandit, len(spec.arms), rng) if spec.bandit is not None else None
        )
        self.stats = ExperimentStats(self.labels)
        self.shadow = ShadowComparator(spec.shadow.fields) if spec.shadow is not None else None
        self.shadow_counts = {"mirrored": 0, "dropped": 0, "timeouts": 0}
        self.replay = ReplayGuard()
        #: Weights last taken from a Serve user_config (re-applied only when it changes).
        self.user_config_weights: list[float] | None = None
        #: Requests the replicas served with the static split because the policy failed.
        self.policy_fallbacks = 0
        #: Bumped whenever what replicas decide on changes.
        self.version = 0
        self.blue_green = (
            BlueGreen(self.labels, self.labels.index(spec.blue_green.active))
            if spec.blue_green is not None
            else None
        )
        #: The highest delta applied per replica, so a resent delta counts once.
        self.ledger = ReplicaLedger()
        #: What the last load recovered and lost (set by :class:`routing.journal.StateStore`).
        self.recovery: dict[str, Any] | None = None

    # --- what replicas see -------------------------------------------------------------------

    def view(self, have_version: int = -1, now: float | None = None) -> dict[str, Any]:
        """What a replica decides on at ``now`` (blue/green routers need it); the bandit's
        statistics only when newer than it has."""
        view: dict[str, Any] = {"version": self.version, "weights": self.current_weights(now)}
        if self.blue_green is not None:
            if now is None:
                raise ValueError("a blue/green router's view needs the time")
            assert self.spec.blue_green is not None
            view["blue_green"] = self.blue_green.view(
                now, self.spec.switch_lease_s, self.spec.blue_green.clock_skew_s
            )
        if self.canary is not None:
            view["canary"] = {
                "run": self.canary.started_at,
                "stage": self.canary.stage,
                "status": self.canary.status,
            }
        if self.bandit is not None and have_version != self.version:
            view["bandit"] = self.bandit.to_dict()
        return view

    def current_weights(self, now: float | None = None) -> list[float]:
        """The split now: the canary's ramp for canaries, all on the active arm for blue/green
        (at ``now``), else the runtime weights (a bandit's replicas ignore them: each request's
        arm is the bandit's draw)."""
        if self.blue_green is not None:
            active = self.blue_green.active_at(-math.inf if now is None else now)
            return [1.0 if i == active else 0.0 for i in range(len(self.labels))]
        return self.canary.weights if self.canary is not None else list(self.weights)

    # --- changes (each deterministic given its arguments) ------------------------------------

    def sync(self, delta: Mapping[str, Any], now: float) -> list[dict[str, Any]]:
        """Fold one replica's figures in and evaluate the canary; returns canary events. A delta
        whose ``replica`` and ``seq`` were applied before (a resend) is skipped."""
        replica = delta.get("replica")
        seq = int(delta.get("seq", 0))
        if replica is not None and self.ledger.applied(str(replica), seq):
            self.ledger.duplicates += 1
            return []
        self._settle(now)
        if delta.get("stats"):
            self.stats.merge(ExperimentStats.from_dict(delta["stats"]))
        self.policy_fallbacks += int(delta.get("fallbacks", 0))
        shadow = delta.get("shadow")
        if shadow and self.shadow is not None:
            self.shadow.merge(ShadowComparator.from_dict(shadow["comparator"]))
            for key in self.shadow_counts:
                self.shadow_counts[key] += int(shadow.get(key, 0))
        events: list[dict[str, Any]] = []
        if self.canary is not None:
            if delta.get("canary"):
                self.canary.apply(CanaryDelta.from_dict(delta["canary"]))
            events = self.tick(now)
        if replica is not None:
            self.ledger.record(str(replica), seq, now)
        return events

    def _settle(self, now: float) -> None:
        if self.blue_green is not None and self.blue_green.settle(now):
            self.version += 1

    def tick(self, now: float) -> list[dict[str, Any]]:
        """Let the canary check its gates and advance by time alone; a blue/green switch whose
        instant passed becomes the active arm."""
        self._settle(now)
        if self.canary is None:
            return []
        events = [e.to_dict() for e in self.canary.evaluate(now)]
        if events:
            self.version += 1
        return events

    def feedback(
        self,
        claims: Mapping[str, Any],
        decisions: Sequence[Sequence[Any]],
        reward: float,
        now: float,
    ) -> dict[str, Any]:
        """Apply one reward to the decisions (``[arm]`` or ``[arm, context]``) a token names for
        this router; all of it or, when anything is refused, none of it.

        Raises:
            RequestValidationError: the reward is outside the router's ``reward_range``, a
                context is outside ``feature_range``, or the update would make the policy's
                statistics non-finite (422).
            ReplayedTokenError: the token was used before (409).
            ReplayGuardFullError: the replay guard is full (503).
        """
        value = check_reward(self.spec, reward)
        parsed = [check_decision(self.spec, d) for d in decisions]
        if not parsed:
            raise RequestValidationError("token", f"names no decision of router {self.spec.name!r}")
        staged = None
        if self.bandit is not None:
            try:
                staged = self.bandit.stage([(arm, value, ctx) for arm, ctx in parsed])
            except NonFiniteStateError as exc:
                raise RequestValidationError("reward", f"refused: {exc}") from None
            except ValueError as exc:
                raise RequestValidationError("token", str(exc)) from None
        self.replay.check_and_mark(
            FeedbackClaims(
                str(claims["token_id"]),
                str(claims.get("request_id", "")),
                float(claims.get("issued_at", now)),
                float(claims["expires_at"]),
                tuple(Decision(self.spec.name, arm) for arm, _ in parsed),
            ),
            now,
        )
        # Nothing below can fail: every check is behind us.
        for arm, _ in parsed:
            self.stats.record_reward(self.labels[arm], value)
            if self.canary is not None:
                self.canary.record_reward(CANARY_ARMS[arm], value)
        if self.bandit is not None and staged is not None:
            self.bandit.commit(staged)
            self.bandit.take_delta()  # the authoritative copy has nobody to send it to
            self.version += 1
        return {"router": self.spec.name, "arms": [self.labels[a] for a, _ in parsed]}

    def control(self, action: str, body: Mapping[str, Any], now: float) -> dict[str, Any]:
        """An operator action: ``weights``, ``pause``, ``resume``, ``promote``, ``rollback``,
        ``switch``, ``reset``; ``user_config`` applies a Serve user_config's weights once. A
        refused action changes nothing.

        Blue/green routers: ``switch`` (``{"to": "<arm>"}``) and ``rollback`` schedule a switch
        (:meth:`routing.bluegreen.BlueGreen.control`).

        Raises:
            UnknownActionError: no such action (404).
            CanaryStateError: the action does not fit this router's policy or status (409).
            RequestValidationError: bad weights, or a ``reason`` that is not a string of at most
                200 characters (422).
        """
        if not isinstance(body, Mapping):
            raise RequestValidationError(
                "body", f"must be a JSON object, got {type(body).__name__}"
            )
        policy = self.spec.policy
        user_config = None
        if action == "user_config":
            user_config = check_weights(len(self.labels), body.get("weights"))
            if user_config == self.user_config_weights:
                return {"applied": False, "reason": "user_config weights unchanged"}
            action = "weights"
        if action not in ACTIONS:
            raise UnknownActionError(
                f"unknown router action {action!r}; actions are {', '.join(ACTIONS)}"
            )
        if policy not in ACTIONS[action]:
            raise CanaryStateError(
                f"router {self.spec.name!r} uses policy {policy!r}; {action!r} applies to "
                f"{' or '.join(ACTIONS[action])} routers"
            )
        if action == "weights":
            if user_config is not None:
                self.weights = self.user_config_weights = user_config
            else:
                self.weights = check_weights(len(self.labels), body.get("weights"))
            self.version += 1
            return {"applied": True, "weights": self.weights}
        if action == "reset":
            fresh = RouterState(self.spec, now)
            fresh.version = self.version + 1
            fresh.replay = self.replay  # used tokens stay used
            fresh.ledger = self.ledger  # and applied deltas applied: a resend must not count
            fresh.blue_green = self.blue_green  # a reset is no switch (it would not be atomic)
            fresh.policy_fallbacks = self.policy_fallbacks
            fresh.recovery = self.recovery
            self.__dict__.update(fresh.__dict__)
            return {"applied": True, "reset": True}
        reason = check_reason(body)
        if self.blue_green is not None:
            lease = self.spec.switch_lease_s
            switch = self.blue_green.control(action, body, reason, now, lease)
            self.version += 1
            return {"applied": True, "switch": switch}
        if self.canary is None:  # pragma: no cover - ACTIONS sends only canary routers here
            raise CanaryStateError(f"router {self.spec.name!r} has no canary")
        event = getattr(self.canary, action)(now, reason or f"{action} by operator")
        self.version += 1
        return {"applied": True, "event": event.to_dict()}

    def configure_active(self, label: str, at: float, now: float) -> dict[str, Any] | None:
        """The config's ``blue_green.active`` is ``label``: when it changed, schedule a switch
        to it at ``at`` (after a pending switch, if any); the switch scheduled, or None."""
        switch = self.blue_green.configure(label, float(at), now) if self.blue_green else None
        if switch is not None:
            self.version += 1
        return switch

    # --- reports -------------------------------------------------------------------------------

    def summary(self, now: float) -> dict[str, Any]:
        """Live state for ``GET /<graph>/graph`` (see :func:`routing.summary.router_summary`)."""
        return router_summary(self, now)

    def shadow_report(self) -> dict[str, Any]:
        """Shadow figures: agreement rate, mean absolute difference, errors, drops, timeouts."""
        return shadow_report(self)

    def report(self, now: float) -> dict[str, Any]:
        """The experiment report: per arm requests, errors, latency, reward CI, vs control."""
        return experiment_report(self, now)

    # --- snapshots -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON, but for the used token ids (:class:`routing.replay
        .ReplaySegments` keeps those: rewriting them into every snapshot would not scale)."""
        return {
            "version": self.version,
            "weights": self.weights,
            "user_config_weights": self.user_config_weights,
            "canary": self.canary.to_dict() if self.canary is not None else None,
            "bandit": self.bandit.to_dict() if self.bandit is not None else None,
            "stats": self.stats.to_dict(),
            "shadow": self.shadow.to_dict() if self.shadow is not None else None,
            "shadow_counts": dict(self.shadow_counts),
            "policy_fallbacks": self.policy_fallbacks,
            "blue_green": self.blue_green.to_dict() if self.blue_green is not None else None,
            "ledger": self.ledger.to_dict(),
        }

    @classmethod
    def from_dict(
        cls, spec: RouterNode, data: Mapping[str, Any], rng: random.Random | None = None
    ) -> RouterState:
        """Rebuild from :meth:`to_dict`'s output.

        A snapshot poisoned by an older version (before rewards were bounded) still loads: bandit
        statistics that are non-finite go back to the prior, and reward figures no bounded
        reward could produce are reset; each is logged as an error.
        """
        state = cls(spec, 0.0, rng)
        state.version = int(data["version"])
        state.weights = [float(w) for w in data["weights"]]
        state.user_config_weights = data.get("user_config_weights")
        if data.get("canary") is not None:
            state.canary = Canary.from_dict(unpoisoned(spec.name, "canary", data["canary"]))
        if data.get("bandit") is not None:
            try:
                state.bandit = Bandit.from_dict(data["bandit"], rng)
            except ValueError as exc:
                log.error(
                    "router %s: the snapshot's bandit statistics are unusable (%s); the bandit "
                    "starts again from its prior",
                    spec.name,
                    exc,
                )
        state.stats = ExperimentStats.from_dict(unpoisoned(spec.name, "stats", data["stats"]))
        if data.get("shadow") is not None and spec.shadow is not None:
            state.shadow = ShadowComparator.from_dict(data["shadow"], spec.shadow.fields)
        state.shadow_counts.update(data.get("shadow_counts", {}))
        state.policy_fallbacks = int(data.get("policy_fallbacks", 0))
        if data.get("blue_green") is not None and spec.blue_green is not None:
            state.blue_green = BlueGreen.from_dict(state.labels, data["blue_green"])
        state.ledger = ReplicaLedger.from_dict(data.get("ledger"))
        # Older snapshots also hold "replay" (the used ids of v1 tokens, no longer accepted).
        return state

    def apply_logged(self, entry: Mapping[str, Any]) -> Any:
        """Apply one logged change (see :class:`StateStore`) and return its result; the state
        holder applies live changes through here too, so replay is the same code."""
        op, now = entry["op"], float(entry["now"])
        if op == "sync":
            return self.sync(entry["delta"], now)
        if op == "tick":
            return self.tick(now)
        if op == "feedback":
            return self.feedback(entry["claims"], entry["decisions"], entry["reward"], now)
        if op == "control":
            return self.control(entry["action"], entry["body"], now)
        if op == "configure":
            return self.configure_active(entry["active"], entry["at"], now)
        raise ValueError(f"unknown logged op {op!r}")
