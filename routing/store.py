"""Who holds a router's :class:`~routing.state.RouterState`: a Ray actor, or the process itself.

- :class:`RouterStateActor`: the Ray actor (named per application and router, detached,
  restarted by Ray when it dies) that holds the state and its
  :class:`~routing.journal.StateStore`. Every change is logged (and forced to disk per
  ``state.fsync``) before it is applied; a change that cannot be logged is refused with
  :class:`~routing.errors.StateUnavailableError` (503) and nothing is applied. Snapshots that
  fail are retried with backoff, logged and counted; the actor never stops snapshotting and
  always starts, reporting what it recovered (:mod:`routing.journal`).
- :class:`~routing.holder.LocalState`: the same calls in-process, without disk (one replica,
  tests); re-exported here.
- :class:`ActorState`: what a router replica holds to call the actor.

Both holders share :class:`~routing.holder.StateHolder`: syncs, rewards, operator actions and
blue/green switches.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from routing.errors import StateUnavailableError
from routing.holder import LocalState, Sleep, StateHolder
from routing.journal import SNAPSHOT_VERSION, Opener, StateStore
from routing.keys import config_hash, state_dir
from routing.metrics import StateFailureMetrics
from routing.spec import RouterNode
from routing.state import RouterState

__all__ = [
    "NAMESPACE",
    "SNAPSHOT_VERSION",
    "ActorState",
    "LocalState",
    "RouterStateActor",
    "StateStore",
    "actor_name",
    "get_state_actor",
]

log = logging.getLogger(__name__)

#: Ray namespace of the state actors.
NAMESPACE = "servegraph"
#: Longest wait between two tries of a failing snapshot.
MAX_SNAPSHOT_BACKOFF_S = 60.0
#: Least time between two log lines about failing log appends (each failed call counts).
FAILURE_LOG_INTERVAL_S = 10.0


class RouterStateActor(StateHolder):
    """Holds one router's :class:`RouterState` in a Ray actor; every change is logged before it
    is applied, and snapshotted every ``snapshot_interval_s``.

    Created by the router's replicas with :func:`get_state_actor` (named, detached, restarted by
    Ray when it dies: the restarted actor reloads the snapshot and replays the log).

    Args:
        app: the Serve application's name.
        spec: the router node.
        clock: wall clock.
        sleep: waits (the ticker, blue/green acknowledgements).
        opener: opens the store's files for writing (tests inject failures).
        fsync: forces files to disk (tests count calls).
        metrics: where failures are counted (default: ``servegraph_router_state_failures``).
    """

    def __init__(
        self,
        app: str,
        spec: RouterNode,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        opener: Opener | None = None,
        fsync: Callable[[int], None] = os.fsync,
        metrics: StateFailureMetrics | None = None,
    ):
        super().__init__(spec, clock, sleep)
        self.app = app
        self._opener, self._fsync = opener, fsync
        self._metrics = metrics or StateFailureMetrics(spec.name)
        self.snapshot_failures = 0
        self.log_failures = 0
        self._failing_snapshots = 0
        self._logged_failure_at = -math.inf
        self._unlogged_failures = 0
        self._ticker: asyncio.Task[None] | None = None
        self._configure(spec)

    def _configure(self, spec: RouterNode) -> str:
        self.spec = spec
        now = self._clock()
        self.store = StateStore(
            state_dir(spec.state.dir),
            self.app,
            spec.name,
            fsync_policy=spec.state.fsync,
            opener=self._opener,
            fsync=self._fsync,
        )
        try:
            self.state, how = self.store.load(spec, now)
        except Exception as exc:  # never fail to start: a router without state still serves
            log.error(
                "router %s.%s: state could not be loaded (%r); starting fresh",
                self.app,
                spec.name,
                exc,
                exc_info=True,
            )
            self.state, how = RouterState(spec, now), f"load failed ({exc!r}); fresh state"
            self.state.recovery = {
                "at": now,
                "snapshot": f"load failed: {exc!r}"[:300],
                "log_entries_replayed": 0,
                "log_lines_dropped": 0,
                "lost": "everything: started fresh (the files are kept)",
            }
        self._dirty = True
        self._next_snapshot = now  # the first tick seals the log the load read
        log.info("router %s.%s: %s", self.app, spec.name, how)
        return how

    # --- changes: logged first ---------------------------------------------------------------

    def _commit(self, entries: list[dict[str, Any]]) -> list[Any]:
        """Log ``entries`` (forced to disk per policy), then apply those logged.

        Raises:
            StateUnavailableError: an entry could not be logged; it and those after it were
                not applied (those before it were).
        """
        done, error = self.store.log(entries)
        results: list[Any] = []
        for entry in entries[:done]:
            try:
                results.append(self.store.apply(self.state, entry))
            except Exception as exc:
                results.append(exc)
        if done:
            self._dirty = True
        if error is not None:
            self._failure("log", error)
            raise StateUnavailableError(
                f"router {self.spec.name!r} could not log a state change ({error}); "
                f"it was not applied: retry later"
            )
        return results

    def _failure(self, kind: str, error: BaseException, retry_in: float | None = None) -> None:
        """Count a failed log append or snapshot; log it (appends: at most every 10 s)."""
        if kind == "log":
            self.log_failures += 1
        else:
            self.snapshot_failures += 1
        self._metrics.failure(kind)
        now = self._clock()
        if kind == "log" and now - self._logged_failure_at < FAILURE_LOG_INTERVAL_S:
            self._unlogged_failures += 1
            return
        more = f" ({self._unlogged_failures} more since the last line)" if kind == "log" else ""
        retry = f"; retrying in {retry_in:.0f} s" if retry_in is not None else ""
        log.error(
            "router %s.%s: state %s failed in %s (%r)%s; %d log and %d snapshot failures so far%s",
            self.app,
            self.spec.name,
            "append" if kind == "log" else "snapshot",
            self.store.folder,
            error,
            retry,
            self.log_failures,
            self.snapshot_failures,
            more,
        )
        if kind == "log":
            self._logged_failure_at, self._unlogged_failures = now, 0

    def _snapshot(self) -> bool:
        """Write a snapshot; on failure count it and back off (1, 2, 4 ... 60 s)."""
        now = self._clock()
        try:
            self.store.snapshot(self.state, now)
        except Exception as exc:
            self._failing_snapshots += 1
            backoff = min(MAX_SNAPSHOT_BACKOFF_S, 2.0 ** (self._failing_snapshots - 1))
            self._next_snapshot = now + backoff
            self._failure("snapshot", exc, backoff)
            return False
        if self._failing_snapshots:
            log.warning(
                "router %s.%s: snapshot written again after %d failures",
                self.app,
                self.spec.name,
                self._failing_snapshots,
            )
        self._failing_snapshots = 0
        self._dirty = False
        self._next_snapshot = now + self.spec.state.snapshot_interval_s
        return True

    def _after_control(self) -> None:
        self._snapshot()  # operator actions are snapshotted at once

    # --- the ticker ----------------------------------------------------------------------------

    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            loop = asyncio.get_running_loop()  # a fresh context: not the first request's
            self._ticker = loop.create_task(self._tick_loop(), context=contextvars.Context())

    async def _tick_loop(self) -> None:
        while True:
            await self._sleep(min(1.0, self.spec.state.snapshot_interval_s))
            try:
                self.tick_once()
            except Exception:  # never let the ticker die: snapshots depend on it
                log.exception("router %s.%s: state tick failed", self.app, self.spec.name)

    def tick_once(self) -> None:
        """One round of the ticker: the canary's clock, due blue/green switches, the config's
        switch, and a snapshot when due."""
        now = self._clock()
        bg = self.state.blue_green
        due_switch = bg is not None and bg.switch is not None and now >= bg.switch["at"]
        if (self.state.canary is not None and self.state.canary.active) or due_switch:
            self._tick()
        self._configure_switch(now)
        if self._dirty and now >= self._next_snapshot:
            self._snapshot()

    # --- the actor's calls --------------------------------------------------------------------

    async def configure(self, spec: RouterNode) -> str:
        """Adopt a (re)deployed router's spec; a changed config starts a fresh state (a changed
        ``blue_green.active`` is no change of identity: it schedules a switch)."""
        self._ensure_ticker()
        if config_hash(spec) == self.state.hash:
            self._adopt_spec(spec)
            return "unchanged"
        self._snapshot()
        self.store.close()
        return self._configure(spec)

    async def sync(
        self,
        deltas: list[dict[str, Any]],
        have_version: int,
        replica: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A replica's batches of figures in, the current view out."""
        self._ensure_ticker()
        return await super().sync(deltas, have_version, replica)

    async def summary(self) -> dict[str, Any]:
        """Live state for ``/graph``, with the store's failure counts."""
        out = await super().summary()
        out["snapshot_failures"] = self.snapshot_failures
        out["log_failures"] = self.log_failures
        return out

    async def flush(self) -> bool:
        """Write a snapshot now (tests, shutdown); False if it failed (counted, retried)."""
        return self._snapshot()


class ActorState:
    """Calls the router's :class:`RouterStateActor` (awaiting its ObjectRefs); what a router
    replica holds its state through."""

    def __init__(self, actor: Any):
        self.actor = actor

    async def configure(self, spec: RouterNode) -> str:
        return str(await self.actor.configure.remote(spec))

    async def sync(
        self,
        deltas: list[dict[str, Any]],
        have_version: int,
        replica: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return dict(await self.actor.sync.remote(deltas, have_version, replica))

    async def feedback(
        self, claims: dict[str, Any], decisions: list[list[Any]], reward: float
    ) -> dict[str, Any]:
        return dict(await self.actor.feedback.remote(claims, decisions, reward))

    async def control(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.actor.control.remote(action, body))

    async def summary(self) -> dict[str, Any]:
        return dict(await self.actor.summary.remote())

    async def report(self) -> dict[str, Any]:
        return dict(await self.actor.report.remote())


def actor_name(app: str, router: str) -> str:
    """Name of a router's state actor in the ``servegraph`` namespace."""
    return f"{app}.{router}"


def get_state_actor(app: str, spec: RouterNode) -> Any:
    """The router's state actor, created on first use (named, detached, restarted on failure)."""
    import ray

    remote = ray.remote(RouterStateActor).options(  # type: ignore[attr-defined]
        name=actor_name(app, spec.name),
        namespace=NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        max_restarts=-1,
        num_cpus=0,
    )
    return remote.remote(app, spec)
