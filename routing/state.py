"""The one authoritative state of a router, shared by its replicas, and where it is kept.

- :class:`RouterState` (pure): the runtime weights, canary, bandit posterior, experiment figures,
  shadow comparison and replay guard of one router. Replicas fold their figures in with
  :meth:`RouterState.sync` (batched: every ``sync_interval_s`` or ``sync_events`` requests) and get
  back the view they decide on; rewards (:meth:`RouterState.feedback`) and operator actions
  (:meth:`RouterState.control`) land here directly. Every change is a deterministic function of
  its inputs and ``now``, so replaying a logged change reproduces it exactly.
- :class:`StateStore`: an append-only JSONL log of those changes plus a periodic JSON snapshot
  (written atomically; the log restarts after it). Loading replays the log over the snapshot, so a
  restart of the state holder loses nothing that was acknowledged.
- :class:`RouterStateActor`: the Ray actor (named per application and router, detached, restarted
  by Ray when it dies) that holds a :class:`RouterState` and its :class:`StateStore`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import random
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from graphs.errors import GraphError, RequestValidationError
from graphs.spec import RouterNode
from routing.bandits import make_bandit
from routing.bandits._base import Bandit
from routing.canary import CANARY_ARMS, Canary, CanaryDelta, CanaryStateError
from routing.report import ExperimentStats
from routing.shadow import ShadowComparator
from routing.tokens import FEEDBACK_KEY_ENV, Decision, FeedbackClaims, ReplayGuard

__all__ = [
    "STATE_DIR_ENV",
    "RouterState",
    "RouterStateActor",
    "StateStore",
    "UnknownActionError",
    "feedback_key",
    "state_dir",
]

log = logging.getLogger(__name__)

#: Environment variable naming the folder snapshots live in.
STATE_DIR_ENV = "SERVEGRAPH_STATE_DIR"
#: Ray namespace of the state actors.
NAMESPACE = "servegraph"
SNAPSHOT_VERSION = 1
#: Control actions and the policies that take them.
ACTIONS = {
    "weights": ("weighted", "ab"),
    "pause": ("canary",),
    "resume": ("canary",),
    "promote": ("canary",),
    "rollback": ("canary",),
    "reset": ("weighted", "ab", "canary", "bandit"),
}


class UnknownActionError(GraphError, ValueError):
    """A control action that does not exist (HTTP 404)."""

    status_code = 404


def state_dir(configured: str | None = None) -> str:
    """The snapshot folder: ``configured``, else ``$SERVEGRAPH_STATE_DIR``, else
    ``~/.servegraph/state``."""
    path = configured or os.environ.get(STATE_DIR_ENV) or os.path.join("~", ".servegraph", "state")
    return os.path.abspath(os.path.expanduser(path))


def feedback_key(graph: str, directory: str | None = None) -> bytes:
    """The graph's feedback signing key: ``$SERVEGRAPH_FEEDBACK_KEY`` if set, else a random key
    created once in the state folder (``<dir>/<graph>/feedback.key``, mode 0600) and shared by
    every ingress replica that sees that folder."""
    env = os.environ.get(FEEDBACK_KEY_ENV)
    if env:
        return env.encode()
    folder = os.path.join(state_dir(directory), graph)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "feedback.key")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    for _ in range(50):  # another replica may be between creating and writing it
        with open(path) as f:
            key = f.read().strip()
        if key:
            return key.encode()
        time.sleep(0.02)
    raise RuntimeError(f"feedback key file {path} stayed empty")


def config_hash(spec: RouterNode) -> str:
    """Hash of what a router's learned state depends on (arms and policy, not replica counts)."""
    fields = spec.model_dump(mode="json", include={"arms", "ab", "canary", "bandit", "shadow"})
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


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
        #: Bumped whenever what replicas decide on changes.
        self.version = 0

    # --- what replicas see -------------------------------------------------------------------

    def view(self, have_version: int = -1) -> dict[str, Any]:
        """What a replica decides on; the bandit's statistics only when newer than it has."""
        view: dict[str, Any] = {"version": self.version, "weights": self.current_weights()}
        if self.canary is not None:
            view["canary"] = {
                "run": self.canary.started_at,
                "stage": self.canary.stage,
                "status": self.canary.status,
            }
        if self.bandit is not None and have_version != self.version:
            view["bandit"] = self.bandit.to_dict()
        return view

    def current_weights(self) -> list[float]:
        """The split now: the canary's ramp for canaries, else the runtime weights (a bandit's
        replicas ignore them: each request's arm is the bandit's draw)."""
        return self.canary.weights if self.canary is not None else list(self.weights)

    # --- changes (each deterministic given its arguments) ------------------------------------

    def sync(self, delta: Mapping[str, Any], now: float) -> list[dict[str, Any]]:
        """Fold one replica's figures in and evaluate the canary; returns canary events."""
        if delta.get("stats"):
            self.stats.merge(ExperimentStats.from_dict(delta["stats"]))
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
        return events

    def tick(self, now: float) -> list[dict[str, Any]]:
        """Let the canary check its gates and advance by time alone."""
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
        """Apply one reward to the decisions (``[arm, context]``) a token names for this router.

        Raises:
            RequestValidationError: the reward is outside what the policy accepts (422).
            ReplayedTokenError: the token was used before (409); nothing changes.
        """
        if not isinstance(reward, (int, float)) or not math.isfinite(reward):
            raise RequestValidationError("reward", f"must be a finite number, got {reward!r}")
        parsed = [(int(d[0]), d[1] if len(d) > 1 else None) for d in decisions]
        for arm, _ in parsed:
            if not 0 <= arm < len(self.labels):
                raise RequestValidationError("token", f"names arm {arm} of {len(self.labels)}")
        if self.bandit is not None:
            try:
                self.bandit._check_reward(float(reward))
            except ValueError as exc:
                raise RequestValidationError("reward", str(exc)) from None
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
        for arm, context in parsed:
            self.stats.record_reward(self.labels[arm], float(reward))
            if self.canary is not None:
                self.canary.record_reward(CANARY_ARMS[arm], float(reward))
            if self.bandit is not None:
                self.bandit.update(arm, float(reward), context)
                self.bandit.take_delta()  # the authoritative copy has nobody to send it to
        if self.bandit is not None:
            self.version += 1
        return {"router": self.spec.name, "arms": [self.labels[a] for a, _ in parsed]}

    def control(self, action: str, body: Mapping[str, Any], now: float) -> dict[str, Any]:
        """An operator action: ``weights``, ``pause``, ``resume``, ``promote``, ``rollback``,
        ``reset``; ``user_config`` applies a Serve user_config's weights once.

        Raises:
            UnknownActionError: no such action (404).
            CanaryStateError: the action does not fit this router's policy or status (409).
            RequestValidationError: bad weights (422).
        """
        policy = self.spec.policy
        if action == "user_config":
            weights = self._check_weights(body.get("weights"))
            if weights == self.user_config_weights:
                return {"applied": False, "reason": "user_config weights unchanged"}
            action, self.user_config_weights = "weights", weights
        if action not in ACTIONS:
            raise UnknownActionError(
                f"unknown router action {action!r}; actions are {', '.join(ACTIONS)}"
            )
        if policy not in ACTIONS[action]:
            raise CanaryStateError(
                f"router {self.spec.name!r} uses policy {policy!r}; {action!r} applies to "
                f"{' or '.join(ACTIONS[action])} routers"
            )
        self.version += 1
        if action == "weights":
            self.weights = self._check_weights(body.get("weights"))
            return {"applied": True, "weights": self.weights}
        if action == "reset":
            fresh = RouterState(self.spec, now)
            fresh.version = self.version
            fresh.replay = self.replay  # used tokens stay used
            self.__dict__.update(fresh.__dict__)
            return {"applied": True, "reset": True}
        assert self.canary is not None
        reason = str(body.get("reason") or f"{action} by operator")
        event = getattr(self.canary, action)(now, reason)
        return {"applied": True, "event": event.to_dict()}

    def _check_weights(self, weights: Any) -> list[float]:
        n = len(self.labels)
        if (
            not isinstance(weights, list)
            or len(weights) != n
            or not all(isinstance(w, (int, float)) and math.isfinite(w) and w >= 0 for w in weights)
            or sum(weights) <= 0
        ):
            raise RequestValidationError(
                "weights", f"must be {n} numbers >= 0 with a positive sum, got {weights!r}"
            )
        total = float(sum(weights))
        return [float(w) / total for w in weights]

    # --- reports -------------------------------------------------------------------------------

    def summary(self, now: float) -> dict[str, Any]:
        """Live state for ``GET /<graph>/graph``."""
        out: dict[str, Any] = {
            "policy": self.spec.policy,
            "arms": list(self.labels),
            "weights": None if self.bandit is not None else self.current_weights(),
            "requests": {n: s.requests for n, s in self.stats.arms.items()},
        }
        if self.spec.ab is not None and self.spec.ab.key is not None:
            out["sticky_key"] = self.spec.ab.key.model_dump(exclude_none=True)
        if self.canary is not None:
            out["canary"] = self.canary.state(now)
            out["canary"]["history"] = [e.to_dict() for e in self.canary.history]
        if self.bandit is not None:
            out["bandit"] = self.bandit.summary()
        if self.shadow is not None:
            out["shadow"] = self.shadow_report()
        return out

    def shadow_report(self) -> dict[str, Any]:
        """Shadow figures: agreement rate, mean absolute difference, errors, drops, timeouts."""
        assert self.shadow is not None
        return {
            **self.shadow_counts,
            "agreement_rate": self.shadow.overall.agreement_rate,
            "mean_abs_diff": self.shadow.overall.mean_abs_diff,
            **self.shadow.to_dict(),
        }

    def report(self, now: float) -> dict[str, Any]:
        """The experiment report: per arm requests, errors, latency, reward CI, vs control."""
        out = {"policy": self.spec.policy, **self.stats.report()}
        if self.bandit is not None:
            out["bandit"] = self.bandit.summary()
        if self.canary is not None:
            out["canary"] = self.canary.state(now)
        if self.shadow is not None:
            out["shadow"] = self.shadow_report()
        return out

    # --- snapshots -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON."""
        return {
            "version": self.version,
            "weights": self.weights,
            "user_config_weights": self.user_config_weights,
            "canary": self.canary.to_dict() if self.canary is not None else None,
            "bandit": self.bandit.to_dict() if self.bandit is not None else None,
            "stats": self.stats.to_dict(),
            "shadow": self.shadow.to_dict() if self.shadow is not None else None,
            "shadow_counts": dict(self.shadow_counts),
            "replay": self.replay.to_dict(),
        }

    @classmethod
    def from_dict(
        cls, spec: RouterNode, data: Mapping[str, Any], rng: random.Random | None = None
    ) -> RouterState:
        """Rebuild from :meth:`to_dict`'s output."""
        state = cls(spec, 0.0, rng)
        state.version = int(data["version"])
        state.weights = [float(w) for w in data["weights"]]
        state.user_config_weights = data.get("user_config_weights")
        if data.get("canary") is not None:
            state.canary = Canary.from_dict(data["canary"])
        if data.get("bandit") is not None:
            state.bandit = Bandit.from_dict(data["bandit"], rng)
        state.stats = ExperimentStats.from_dict(data["stats"])
        if data.get("shadow") is not None and spec.shadow is not None:
            state.shadow = ShadowComparator.from_dict(data["shadow"], spec.shadow.fields)
        state.shadow_counts.update(data.get("shadow_counts", {}))
        state.replay = ReplayGuard.from_dict(data["replay"])
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
        raise ValueError(f"unknown logged op {op!r}")


class StateStore:
    """A router's snapshot (``<dir>/<app>/<router>.json``) and change log (``.log``).

    Args:
        directory: the state folder (:func:`state_dir`).
        app: the Serve application's name.
        router: the router node's name.
    """

    def __init__(self, directory: str, app: str, router: str):
        folder = os.path.join(directory, app)
        os.makedirs(folder, exist_ok=True)
        self.snapshot_path = os.path.join(folder, f"{router}.json")
        self.log_path = os.path.join(folder, f"{router}.log")
        self._log: Any = None

    def load(self, spec: RouterNode, now: float) -> tuple[RouterState, str]:
        """The saved state with its log replayed, or a fresh one; and a line saying which."""
        state = RouterState(spec, now)
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
            how = f"snapshot of {saved.get('saved_at')}"
        replayed = 0
        if os.path.exists(self.log_path):
            with open(self.log_path) as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        break  # a torn last line: the change it held was never acknowledged
                    state.apply_logged(entry)
                    replayed += 1
        return state, f"{how}, {replayed} logged changes replayed"

    def append(self, entry: Mapping[str, Any]) -> None:
        """Log one change (flushed to the OS before the caller acknowledges it)."""
        if self._log is None:
            self._log = open(self.log_path, "a")  # kept open between calls
        self._log.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._log.flush()

    def snapshot(self, state: RouterState, now: float) -> None:
        """Write the full state atomically, then start a new log."""
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
