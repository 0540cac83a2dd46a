"""Blue/green switching: every replica of a router moves to the other arm at the same instant.

A switch is scheduled by the state holder for an instant ``T = now + lease`` (``lease``:
:attr:`routing.spec.RouterNode.switch_lease_s`), and never earlier than the end of any lease it
handed out before (:class:`SwitchClock`). Replicas sync at least every ``sync_interval_s``, far
inside the lease, so each learns of the switch before ``T`` and flips when its own clock passes
``T`` (:class:`ReplicaSwitch`). A replica whose view is older than the lease (``as_of + lease -
clock_skew_s``) cannot know whether a switch it missed has happened: it syncs before serving
and refuses to serve while it cannot. The control call returns ``clock_skew_s`` after ``T`` with
the replicas that confirmed (synced after the switch was scheduled).

Guarantee: once the switch is acknowledged, no replica whose clock is within ``clock_skew_s``
of the state holder's chooses the old arm. Requests chosen before ``T`` may still be running.

:class:`BlueGreen` is the pure state side (in :class:`~routing.state.RouterState`): the active
arm, the pending switch and the history.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from nodes.errors import RequestValidationError
from routing.canary import CanaryStateError

__all__ = ["MAX_HISTORY", "BlueGreen", "ReplicaSwitch", "SwitchClock"]

#: Events kept in a blue/green router's history.
MAX_HISTORY = 100


class BlueGreen:
    """The active arm of a blue/green router, its pending switch and history (pure).

    Args:
        labels: the router's arm names (two).
        active: index of the active arm.
    """

    def __init__(self, labels: list[str], active: int):
        self.labels = list(labels)
        self.active = active
        #: ``{"id", "from", "to", "at", "scheduled_at", "reason"}`` until ``at`` has passed.
        self.switch: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        self.switches = 0
        #: ``blue_green.active`` of the config last seen (a switch is owed when it changes).
        self.configured = labels[active]
        #: The config asked for an arm while another switch was pending: scheduled after it.
        self.owed: str | None = None

    def active_at(self, now: float) -> int:
        """The arm that serves at ``now``."""
        if self.switch is not None and now >= self.switch["at"]:
            return int(self.switch["to"])
        return self.active

    def settle(self, now: float) -> bool:
        """Make a switch whose instant has passed the active arm; True if one did."""
        if self.switch is None or now < self.switch["at"]:
            return False
        switch, self.switch = self.switch, None
        self.active = int(switch["to"])
        self._event(switch["at"], "switched", switch, switch["reason"])
        return True

    def schedule(self, to: int, at: float, now: float, reason: str) -> dict[str, Any]:
        """Schedule a switch to arm ``to`` at ``at``.

        Raises:
            CanaryStateError: a switch is pending, or ``to`` is already active (409).
        """
        self._none_pending(now)
        if to == self.active:
            raise CanaryStateError(f"arm {self.labels[to]!r} is already active")
        self.switches += 1
        self.switch = {
            "id": self.switches,
            "from": self.active,
            "to": to,
            "at": at,
            "scheduled_at": now,
            "reason": reason,
        }
        self._event(now, "scheduled", self.switch, reason)
        return dict(self.switch)

    def _none_pending(self, now: float) -> None:
        self.settle(now)
        if self.switch is not None:
            raise CanaryStateError(
                f"a switch to {self.labels[self.switch['to']]!r} is pending until "
                f"{self.switch['at']:.3f}; switch again once it has happened"
            )

    def rollback_target(self) -> int:
        """The arm before the last switch.

        Raises:
            CanaryStateError: no switch happened yet (409).
        """
        if not any(e["action"] == "switched" for e in self.history):
            raise CanaryStateError("no switch to roll back: the configured arm is still active")
        return 1 - self.active

    def control(
        self, action: str, body: Mapping[str, Any], reason: str | None, now: float, lease_s: float
    ) -> dict[str, Any]:
        """``switch`` (to ``body["to"]``) or ``rollback`` (to the arm before the last switch),
        at ``body["at"]`` (default ``now + lease_s``); the switch scheduled, arms by name.

        Raises:
            RequestValidationError: ``to`` names no arm, or ``at`` is no time from now on (422).
            CanaryStateError: a switch is pending, the arm is active already, or there is no
                switch to roll back (409).
        """
        self._none_pending(now)
        if action == "rollback":
            to = self.rollback_target()
        else:
            to_label = body.get("to")
            if to_label not in self.labels:
                arms = ", ".join(self.labels)
                raise RequestValidationError(
                    "to", f"must name one of the arms ({arms}), got {to_label!r}"
                )
            to = self.labels.index(to_label)
        at = body.get("at", now + lease_s)
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not at >= now:
            raise RequestValidationError("at", f"must be a time not before now, got {at!r}")
        return self.named(self.schedule(to, float(at), now, reason or f"{action} by operator"))

    def named(self, switch: Mapping[str, Any]) -> dict[str, Any]:
        """``switch`` with its arms by name."""
        return {**switch, "from": self.labels[switch["from"]], "to": self.labels[switch["to"]]}

    def configure(self, label: str, at: float, now: float) -> dict[str, Any] | None:
        """The config's ``blue_green.active`` is ``label``: schedule a switch when it changed
        (after a pending one, if any); the switch scheduled (arms by name), or None."""
        self.settle(now)
        if label != self.configured:
            self.configured, self.owed = label, label
        if self.owed is None or self.switch is not None:
            return None
        target, self.owed = self.labels.index(self.owed), None
        if target == self.active:
            return None
        return self.named(
            self.schedule(target, at, now, f"config: blue_green.active is now {label!r}")
        )

    def _event(self, at: float, action: str, switch: Mapping[str, Any], reason: str) -> None:
        self.history.append(
            {
                "at": at,
                "action": action,
                "from": self.labels[switch["from"]],
                "to": self.labels[switch["to"]],
                "switch_at": switch["at"],
                "reason": reason,
            }
        )
        del self.history[:-MAX_HISTORY]

    # --- views and reports -----------------------------------------------------------------

    def view(self, now: float, lease_s: float, clock_skew_s: float) -> dict[str, Any]:
        """What replicas decide on: the arm now, the switch still ahead, and the lease."""
        pending = self.switch if self.switch is not None and now < self.switch["at"] else None
        return {
            "active": self.active_at(now),
            "switch": dict(pending) if pending is not None else None,
            "as_of": now,
            "lease_s": lease_s,
            "clock_skew_s": clock_skew_s,
        }

    def summary(self, now: float) -> dict[str, Any]:
        """For ``/graph``: the active arm, the pending switch and the history."""
        pending = self.switch if self.switch is not None and now < self.switch["at"] else None
        return {
            "active": self.labels[self.active_at(now)],
            "configured": self.configured,
            "switch": None
            if pending is None
            else {
                "to": self.labels[pending["to"]],
                "at": pending["at"],
                "in_s": round(pending["at"] - now, 3),
                "reason": pending["reason"],
            },
            "history": [dict(e) for e in self.history],
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON for the router's snapshot."""
        return {
            "active": self.active,
            "switch": self.switch,
            "history": self.history,
            "switches": self.switches,
            "configured": self.configured,
            "owed": self.owed,
        }

    @classmethod
    def from_dict(cls, labels: list[str], data: Mapping[str, Any]) -> BlueGreen:
        """Rebuild from :meth:`to_dict`."""
        bg = cls(labels, int(data["active"]))
        bg.switch = dict(data["switch"]) if data.get("switch") else None
        bg.history = [dict(e) for e in data.get("history", [])]
        bg.switches = int(data.get("switches", 0))
        bg.configured = str(data.get("configured", labels[bg.active]))
        bg.owed = data.get("owed")
        return bg


class SwitchClock:
    """The state holder's side of the lease: when the next switch may happen, and which
    replicas have synced since (soft state, kept in memory).

    Every view handed out promises its replica that no switch happens before ``as_of + lease``;
    :meth:`switch_at` keeps that promise even when the lease was shortened since.
    """

    def __init__(self) -> None:
        self.promised_until = -math.inf
        #: replica id -> (time of its last sync, highest switch id it held then)
        self.replicas: dict[str, tuple[float, int]] = {}

    def issued(self, view: Mapping[str, Any]) -> None:
        """A view went out: no switch may happen before its lease ends."""
        self.promised_until = max(self.promised_until, view["as_of"] + view["lease_s"])

    def heard(self, replica: str | None, now: float, seen_switch: int = 0) -> None:
        """A replica synced at ``now``, holding the switches up to ``seen_switch``."""
        if replica:
            self.replicas[replica] = (now, seen_switch)
            if len(self.replicas) > 4096:  # replicas come and go: forget the longest silent
                oldest = min(self.replicas, key=lambda r: self.replicas[r][0])
                del self.replicas[oldest]

    def switch_at(self, now: float, lease_s: float) -> float:
        """The earliest instant a switch scheduled at ``now`` may happen."""
        return max(now + lease_s, self.promised_until)

    def confirmations(self, switch: Mapping[str, Any], lease_s: float) -> dict[str, list[str]]:
        """Replicas that hold ``switch`` (they said so, or synced after its instant), and those
        heard from within a lease before it was scheduled that do not (unreachable, or gone)."""
        confirmed, missing = [], []
        for replica, (at, seen) in sorted(self.replicas.items()):
            if seen >= switch["id"] or at >= switch["at"]:
                confirmed.append(replica)
            elif at >= switch["scheduled_at"] - lease_s:
                missing.append(replica)
        return {"confirmed": confirmed, "unconfirmed": missing}


class ReplicaSwitch:
    """A replica's copy of its router's blue/green view: the arm to serve by its own clock.

    Args:
        active: the configured active arm (used only until the first view arrives; a replica
            with no view is stale and syncs before serving).
    """

    def __init__(self, active: int):
        self.active = active
        self.switch: dict[str, Any] | None = None
        self.fresh_until = -math.inf
        #: Highest switch id seen (reported back, so the holder knows who holds a switch).
        self.seen = 0

    def adopt(self, view: Mapping[str, Any]) -> None:
        """Take the state holder's blue/green view."""
        self.active = int(view["active"])
        self.switch = dict(view["switch"]) if view.get("switch") else None
        if self.switch is not None:
            self.seen = max(self.seen, int(self.switch["id"]))
        self.fresh_until = view["as_of"] + view["lease_s"] - view["clock_skew_s"]

    def arm(self, now: float) -> int:
        """The arm to serve at ``now`` (this replica's wall clock)."""
        if self.switch is not None and now >= self.switch["at"]:
            return int(self.switch["to"])
        return self.active

    def stale(self, now: float) -> bool:
        """Whether a switch this replica has not heard of may have happened by ``now``."""
        return now >= self.fresh_until
