"""Where a router's :class:`~routing.state.RouterState` is kept: on disk and in a Ray actor.

- :class:`StateStore`: an append-only JSONL log of changes plus a periodic JSON snapshot (written
  atomically; the log restarts after it), and the used token ids in
  :class:`~routing.replay.ReplaySegments` beside them. Loading replays the log over the
  snapshot, so a restart of the state holder loses nothing that was acknowledged.
- :class:`RouterStateActor`: the Ray actor (named per application and router, detached,
  restarted by Ray when it dies) that holds a :class:`RouterState` and its :class:`StateStore`;
  router replicas call it through :class:`ActorState`, or hold the state in-process with
  :class:`LocalState` (one replica, tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from routing.keys import config_hash, state_dir
from routing.replay import ReplaySegments
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
#: 2: the used token ids moved out of the snapshot into replay segments.
SNAPSHOT_VERSION = 2


class StateStore:
    """A router's snapshot (``<dir>/<app>/<router>.json``), change log (``.log``) and used token
    ids (``.replay/<hour>.jsonl``).

    The ids accepted since the last snapshot are in the log; :meth:`snapshot` appends them to
    their segments before it truncates the log, so the snapshot never carries them. They outlive
    a change of the router's configuration: a used token stays used.

    Args:
        directory: the state folder (:func:`~routing.keys.state_dir`).
        app: the Serve application's name.
        router: the router node's name.
    """

    def __init__(self, directory: str, app: str, router: str):
        folder = os.path.join(directory, app)
        os.makedirs(folder, exist_ok=True)
        self.snapshot_path = os.path.join(folder, f"{router}.json")
        self.log_path = os.path.join(folder, f"{router}.log")
        self.segments = ReplaySegments(os.path.join(folder, f"{router}.replay"))
        self._log: Any = None
        self._unsaved: list[tuple[str, float]] = []

    def load(self, spec: RouterNode, now: float) -> tuple[RouterState, str]:
        """The saved state with its log replayed, or a fresh one; and a line saying which."""
        state, how = self._load(spec, now)
        # Ids accepted since the last snapshot were marked again by the replay above (the live
        # guard accepted each of them once, so no replayed entry collides with another); the
        # older ones come from the segments.
        remembered = state.replay.remember(self.segments.load(now), now)
        return state, f"{how}, {remembered} used token ids loaded"

    def _load(self, spec: RouterNode, now: float) -> tuple[RouterState, str]:
        state = RouterState(spec, now)
        state.replay.on_mark = self._mark
        try:
            with open(self.snapshot_path) as f:
                saved = json.load(f)
        except FileNotFoundError:
            saved = None
        if saved is not None and saved.get("config_hash") != state.hash:
            stale = f"{self.snapshot_path}.{int(now)}.stale"
            os.replace(self.snapshot_path, stale)
            if os.path.exists(self.log_path):
                os.replace(self.log_path, f"{stale[:-6]}.log.stale")
            return state, f"router config changed; previous state kept in {stale}"
        how = "fresh state"
        if saved is not None:
            state = RouterState.from_dict(spec, saved["state"])
            state.replay.on_mark = self._mark
            how = f"snapshot of {saved.get('saved_at')}"
        replayed = refused = 0
        if os.path.exists(self.log_path):
            with open(self.log_path) as f:
                for number, line in enumerate(f, 1):
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        break  # a torn last line: the change it held was never acknowledged
                    try:
                        state.apply_logged(entry)
                    except Exception as exc:
                        # Only a log written by an older version holds a change refused now (a
                        # reward it let through unbounded): skipping it is what this one does.
                        log.error(
                            "%s line %d: logged change refused (%r)", self.log_path, number, exc
                        )
                        refused += 1
                        continue
                    replayed += 1
        skipped = f", {refused} refused" if refused else ""
        return state, f"{how}, {replayed} logged changes replayed{skipped}"

    def _mark(self, token_id: str, forget_at: float) -> None:
        self._unsaved.append((token_id, forget_at))

    def append(self, entry: Mapping[str, Any]) -> None:
        """Log one change (flushed to the OS before the caller acknowledges it)."""
        if self._log is None:
            self._log = open(self.log_path, "a")  # kept open between calls
        self._log.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._log.flush()

    def snapshot(self, state: RouterState, now: float) -> None:
        """Append the token ids used since the last snapshot to their segments (and delete the
        expired segments), write the full state atomically, then start a new log."""
        if self._unsaved:
            self.segments.write(self._unsaved)
            self._unsaved = []
        self.segments.prune(now)
        tmp = f"{self.snapshot_path}.tmp"
        with open(tmp, "w") as f:
            json.dump(
                {
                    "snapshot_version": SNAPSHOT_VERSION,
                    "config_hash": state.hash,
                    "saved_at": now,
                    "state": state.to_dict(),
                },
                f,
            )
        os.replace(tmp, self.snapshot_path)
        if self._log is not None:
            self._log.close()
        self._log = open(self.log_path, "w")  # truncated: the snapshot has it all

    def close(self) -> None:
        """Close the change log (a new store takes over, e.g. after a config change)."""
        if self._log is not None:
            self._log.close()
            self._log = None


def actor_name(app: str, router: str) -> str:
    """Name of a router's state actor in the ``servegraph`` namespace."""
    return f"{app}.{router}"


class RouterStateActor:
    """Holds one router's :class:`RouterState` in a Ray actor; every change is logged before it
    is acknowledged, and snapshotted every ``snapshot_interval_s``.

    Created by the router's replicas with :func:`get_state_actor` (named, detached, restarted by
    Ray when it dies: the restarted actor reloads the snapshot and replays the log).
    """

    def __init__(self, app: str, spec: RouterNode):
        self.app = app
        self._configure(spec)
        self._ticker: asyncio.Task[None] | None = None

    def _configure(self, spec: RouterNode) -> str:
        self.spec = spec
        self.store = StateStore(state_dir(spec.state.dir), self.app, spec.name)
        self.state, how = self.store.load(spec, time.time())
        self._dirty = True
        self._last_snapshot = 0.0
        log.info("router %s.%s: %s", self.app, spec.name, how)
        return how

    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.spec.state.snapshot_interval_s))
            now = time.time()
            if self.state.canary is not None and self.state.canary.active:
                self._change({"op": "tick", "now": now})
            if self._dirty and now - self._last_snapshot >= self.spec.state.snapshot_interval_s:
                self.store.snapshot(self.state, now)
                self._dirty, self._last_snapshot = False, now

    def _change(self, entry: dict[str, Any]) -> Any:
        """Apply a change, then log it (a change that raised is neither applied nor logged)."""
        result = self.state.apply_logged(entry)
        self.store.append(entry)
        self._dirty = True
        return result

    async def configure(self, spec: RouterNode) -> str:
        """Adopt a (re)deployed router's spec; a changed config starts a fresh state."""
        self._ensure_ticker()
        if config_hash(spec) == self.state.hash:
            self.spec = spec
            self.state.spec = spec
            return "unchanged"
        self.store.snapshot(self.state, time.time())
        self.store.close()
        return self._configure(spec)

    async def sync(self, deltas: list[dict[str, Any]], have_version: int) -> dict[str, Any]:
        """A replica's batches of figures in, the current view out."""
        self._ensure_ticker()
        for delta in deltas:
            self._change({"op": "sync", "now": time.time(), "delta": delta})
        return self.state.view(have_version)

    async def feedback(
        self, claims: dict[str, Any], decisions: list[list[Any]], reward: float
    ) -> dict[str, Any]:
        """Apply a verified token's reward (see :meth:`RouterState.feedback`)."""
        entry = {
            "op": "feedback",
            "now": time.time(),
            "claims": claims,
            "decisions": decisions,
            "reward": reward,
        }
        return dict(self._change(entry))

    async def control(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """An operator action (see :meth:`RouterState.control`); returns its result and view."""
        entry = {"op": "control", "now": time.time(), "action": action, "body": body}
        result = self._change(entry)
        self.store.snapshot(self.state, time.time())  # operator actions are snapshotted at once
        self._dirty, self._last_snapshot = False, time.time()
        return {**result, "view": self.state.view()}

    async def summary(self) -> dict[str, Any]:
        """Live state for ``/graph``."""
        return self.state.summary(time.time())

    async def report(self) -> dict[str, Any]:
        """The experiment report for ``/experiments``."""
        return self.state.report(time.time())

    async def flush(self) -> None:
        """Write a snapshot now (tests, shutdown)."""
        self.store.snapshot(self.state, time.time())
        self._dirty = False


class LocalState:
    """The state holder in-process (one replica, tests): same calls as :class:`ActorState`."""

    def __init__(self, spec: RouterNode, clock: Callable[[], float] = time.time):
        self.state = RouterState(spec, clock())
        self._clock = clock

    async def sync(self, deltas: list[dict[str, Any]], have_version: int) -> dict[str, Any]:
        for delta in deltas:
            self.state.sync(delta, self._clock())
        return self.state.view(have_version)

    async def feedback(
        self, claims: dict[str, Any], decisions: list[list[Any]], reward: float
    ) -> dict[str, Any]:
        return self.state.feedback(claims, decisions, reward, self._clock())

    async def control(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        result = self.state.control(action, body, self._clock())
        return {**result, "view": self.state.view()}

    async def summary(self) -> dict[str, Any]:
        return self.state.summary(self._clock())

    async def report(self) -> dict[str, Any]:
        return self.state.report(self._clock())


class ActorState:
    """Calls the router's :class:`RouterStateActor` (awaiting its ObjectRefs); what a router
    replica holds its state through."""

    def __init__(self, actor: Any):
        self.actor = actor

    async def configure(self, spec: RouterNode) -> str:
        return str(await self.actor.configure.remote(spec))

    async def sync(self, deltas: list[dict[str, Any]], have_version: int) -> dict[str, Any]:
        return dict(await self.actor.sync.remote(deltas, have_version))

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
