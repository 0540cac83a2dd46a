"""The state holder's calls, shared by the Ray actor and the in-process holder.

:class:`StateHolder` turns a replica's sync, a reward and an operator action into changes of
the router's :class:`~routing.state.RouterState` (applied by the subclass: logged first in
:class:`~routing.store.RouterStateActor`, in memory in :class:`LocalState`), hands out views,
and schedules blue/green switches (:mod:`routing.bluegreen`), acknowledging each once its
instant has passed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from nodes.errors import RequestValidationError
from routing.bluegreen import SwitchClock
from routing.errors import StateUnavailableError
from routing.keys import config_hash
from routing.spec import RouterNode
from routing.state import RouterState

__all__ = ["LocalState", "Sleep", "StateHolder"]

log = logging.getLogger(__name__)

#: Waits a number of seconds (``asyncio.sleep``; tests advance a fake clock).
Sleep = Callable[[float], Awaitable[Any]]


class StateHolder:
    """What both holders do: views, replicas' syncs, rewards, operator actions, blue/green
    scheduling. Subclasses set ``state`` and apply changes in :meth:`_commit`."""

    state: RouterState

    def __init__(self, spec: RouterNode, clock: Callable[[], float], sleep: Sleep):
        self.spec = spec
        self._clock = clock
        self._sleep = sleep
        self.switches = SwitchClock()
        #: ``blue_green.active`` of the latest config a replica brought (None: none yet).
        self._wanted_active: str | None = None

    def _commit(self, entries: list[dict[str, Any]]) -> list[Any]:
        """Apply changes in order; a change's result, or the exception it raised (it changed
        nothing)."""
        raise NotImplementedError

    def _one(self, entry: dict[str, Any]) -> Any:
        [result] = self._commit([entry])
        if isinstance(result, Exception):
            raise result
        return result

    def _view(self, have_version: int = -1) -> dict[str, Any]:
        view = self.state.view(have_version, self._clock())
        if "blue_green" in view:
            self.switches.issued(view["blue_green"])
        return view

    async def sync(
        self,
        deltas: list[dict[str, Any]],
        have_version: int,
        replica: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A replica's batches of figures in, the current view out. ``replica`` is
        ``{"id", "switch"}`` (the highest blue/green switch it holds)."""
        now = self._clock()
        results = self._commit([{"op": "sync", "now": now, "delta": d} for d in deltas])
        for result in results:
            if isinstance(result, Exception):  # logged, refused as it will be on replay
                log.error("router %s: a replica's delta was refused (%r)", self.spec.name, result)
        if replica is not None:
            self.switches.heard(str(replica.get("id")), now, int(replica.get("switch", 0)))
        self._configure_switch(now)
        return self._view(have_version)

    async def feedback(
        self, claims: dict[str, Any], decisions: list[list[Any]], reward: float
    ) -> dict[str, Any]:
        """Apply a verified token's reward (see :meth:`RouterState.feedback`)."""
        entry = {"op": "feedback", "now": self._clock(), "claims": claims}
        return dict(self._one({**entry, "decisions": decisions, "reward": reward}))

    async def control(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """An operator action (see :meth:`RouterState.control`); returns its result and view.
        A blue/green switch returns once its instant has passed, with the replicas that
        confirmed it."""
        now = self._clock()
        bg = self.spec.blue_green
        if bg is not None and action in ("switch", "rollback") and isinstance(body, Mapping):
            if "at" in body:
                raise RequestValidationError("at", "is set by the router; leave it out")
            body = {**body, "at": self.switches.switch_at(now, self.spec.switch_lease_s)}
        result = dict(self._one({"op": "control", "now": now, "action": action, "body": body}))
        self._after_control()
        if "switch" in result and bg is not None:
            switch = result["switch"]
            while (left := switch["at"] + bg.clock_skew_s - self._clock()) > 0:
                await self._sleep(left)
            result["acknowledged_at"] = self._clock()
            result.update(self.switches.confirmations(switch, self.spec.switch_lease_s))
            self._tick()  # the switch into the history now
        return {**result, "view": self._view()}

    def _after_control(self) -> None:
        """Hook: the actor snapshots after every operator action."""

    def _tick(self) -> None:
        try:
            self._commit([{"op": "tick", "now": self._clock()}])
        except StateUnavailableError:
            pass  # counted and logged; the next tick tries again

    def _configure_switch(self, now: float) -> None:
        """Schedule the switch a changed ``blue_green.active`` asks for, or one it still owes."""
        bg, wanted = self.state.blue_green, self._wanted_active
        if bg is None:
            return
        changed = wanted is not None and wanted != bg.configured
        owed_due = bg.owed is not None and (bg.switch is None or now >= bg.switch["at"])
        if not (changed or owed_due):
            return
        label = wanted if changed and wanted is not None else bg.configured
        at = self.switches.switch_at(now, self.spec.switch_lease_s)
        try:
            self._commit([{"op": "configure", "now": now, "active": label, "at": at}])
        except StateUnavailableError:
            pass  # tried again at the next sync

    def _adopt_spec(self, spec: RouterNode) -> None:
        """A replica brought ``spec`` (same learned-state identity): take it, and its
        ``blue_green.active`` through a scheduled switch."""
        self.spec = spec
        self.state.spec = spec
        if spec.blue_green is not None:
            self._wanted_active = spec.blue_green.active
            self._configure_switch(self._clock())

    async def summary(self) -> dict[str, Any]:
        """Live state for ``/graph``."""
        return self.state.summary(self._clock())

    async def report(self) -> dict[str, Any]:
        """The experiment report for ``/experiments``."""
        return self.state.report(self._clock())


class LocalState(StateHolder):
    """The state holder in-process (one replica, tests): same calls as :class:`ActorState`.

    Args:
        spec: the router node.
        clock: wall clock (blue/green switches are scheduled on it).
        sleep: waits (a blue/green switch is acknowledged after its instant).
    """

    def __init__(
        self,
        spec: RouterNode,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ):
        super().__init__(spec, clock, sleep)
        self.state = RouterState(spec, clock())

    def _commit(self, entries: list[dict[str, Any]]) -> list[Any]:
        results: list[Any] = []
        for entry in entries:
            try:
                results.append(self.state.apply_logged(entry))
            except Exception as exc:
                results.append(exc)
        return results

    async def configure(self, spec: RouterNode) -> str:
        """Adopt a redeployed router's spec (a changed config starts a fresh state)."""
        if config_hash(spec) != self.state.hash:
            self.spec, self.state = spec, RouterState(spec, self._clock())
            return "fresh state"
        self._adopt_spec(spec)
        return "unchanged"
