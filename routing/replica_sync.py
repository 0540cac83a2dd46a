"""A router replica's side of the shared state: batched syncs, the view it decides on, and
blue/green switches by its own clock.

:class:`StateSync` is mixed into :class:`routing.router.Router`: every ``sync_interval_s`` (or
``sync_events`` requests) it sends the replica's pending figures (one delta per batch, numbered
per replica so a resend counts once) and adopts the state holder's view. Figures that could not
be sent are kept, up to :data:`MAX_UNSENT` batches, and resent.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Mapping
from typing import Any

from nodes.resilience import classify
from routing.ab import StickyAB
from routing.bandits._base import Bandit
from routing.bluegreen import ReplicaSwitch
from routing.canary_events import CanaryDelta
from routing.errors import StateUnavailableError
from routing.metrics import RouterMetrics
from routing.spec import RouterNode
from routing.store import ActorState, get_state_actor
from routing.tokens import ReplayedTokenError

__all__ = ["MAX_UNSENT", "StateSync"]

log = logging.getLogger(__name__)
#: Most batches of figures a replica keeps while its state holder is unreachable.
MAX_UNSENT = 100
#: Longest a router replica's first request waits for its first sync (which may start the state
#: holder, a new process: seconds on a busy machine); then it decides on the configured split
#: (a canary on its stable arm) while the sync goes on.
FIRST_SYNC_WAIT_S = 1.0
#: How long a reward keeps being sent while the router's state holder restarts.
FEEDBACK_RETRY_S = 5.0


class StateSync:
    """Syncing with the router's state holder (mixed into :class:`routing.router.Router`,
    which sets these attributes and makes the deltas)."""

    spec: RouterNode
    labels: list[str]
    split: StickyAB
    bandit: Bandit | None
    replica_id: str
    _state: Any
    _version: int
    _unsent: list[dict[str, Any]]
    _canary: dict[str, Any] | None
    _canary_delta: CanaryDelta | None
    _bg: ReplicaSwitch | None
    _wall: Callable[[], float]
    _refresh: asyncio.Task[None] | None
    _started: asyncio.Future[None] | None
    _sync_task: asyncio.Task[None] | None
    _sync_lock: asyncio.Lock
    _wake: asyncio.Event
    _metrics: RouterMetrics | None

    def _take_delta(self) -> dict[str, Any]:
        raise NotImplementedError

    def _adopt(self, view: Mapping[str, Any]) -> None:
        """Take the state holder's view: weights, canary stage, bandit posterior."""
        canary = view.get("canary")
        if canary is not None and (
            self._canary is None
            or (canary["run"], canary["stage"]) != (self._canary["run"], self._canary["stage"])
        ):
            self._canary = dict(canary)
            if self._canary_delta is None or self._canary_delta.empty:
                self._canary_delta = CanaryDelta(canary["run"], canary["stage"])
        if self._bg is not None and "blue_green" in view:
            self._bg.adopt(view["blue_green"])
            self._flip()
        else:
            weights = view["weights"]
            if sum(weights) > 0 and weights != self.split.weights:
                self.split.set_weights(weights)
        if self.bandit is not None and "bandit" in view:
            self.bandit.sync(view["bandit"])
        self._version = int(view["version"])
        if self._metrics is not None:
            stage = int(self._canary["stage"]) if self._canary is not None else None
            bandit = self.bandit is not None
            self._metrics.policy(self.labels, list(self.split.weights), bandit, stage)

    async def sync_now(self) -> None:
        """Send this replica's figures and adopt the current view. Figures that could not be
        sent are kept (up to ``MAX_UNSENT`` batches) and go with the next try."""
        async with self._sync_lock:  # one sync at a time, or figures would be sent twice
            state = await self._get_state()
            delta = self._take_delta()
            if delta:
                self._unsent.append(delta)
                del self._unsent[:-MAX_UNSENT]
            hello = {"id": self.replica_id, "switch": self._bg.seen if self._bg else 0}
            view = await state.sync(self._unsent, self._version, hello)
            self._unsent = []
            self._adopt(view)

    async def _get_state(self) -> Any:
        if self._state is None:
            from ray import serve

            app = serve.get_replica_context().app_name
            self._state = ActorState(get_state_actor(app, self.spec))
            await self._state.configure(self.spec)
        return self._state

    async def send_feedback(
        self, claims: dict[str, Any], decisions: list[list[Any]], reward: float
    ) -> dict[str, Any]:
        """Apply a verified token's reward to this router's decisions in the state holder.

        A state holder that dies during the call (Ray restarts it within seconds) leaves the
        reward applied or not: the call is made again until ``FEEDBACK_RETRY_S`` has passed,
        which is safe because a token is used once: a retry told the token was used learns
        that the first call landed. Past that, 503 with ``Retry-After``."""
        state = await self._get_state()
        deadline = asyncio.get_running_loop().time() + FEEDBACK_RETRY_S
        tries = 0
        while True:
            tries += 1
            try:
                result = await state.feedback(claims, decisions, reward)
                break
            except ReplayedTokenError:
                if tries == 1:
                    raise
                labels = [self.labels[int(d[0])] for d in decisions]
                result = {"router": self.spec.name, "arms": labels}  # the first call landed
                break
            except Exception as exc:
                if classify(exc) is None:
                    raise
                if asyncio.get_running_loop().time() >= deadline:
                    raise StateUnavailableError(
                        f"router {self.spec.name!r}: its state holder is restarting; the "
                        "reward may not have been applied: send it again (a reward applied "
                        "once is refused the second time with 409)",
                        retry_after_s=1,
                    ) from None
                await asyncio.sleep(0.25)
        return result

    async def _ensure_started(self) -> None:
        """First call: one sync (a restarted replica resumes from the shared state), then the
        background sync loop. Requests wait for that first sync at most ``FIRST_SYNC_WAIT_S``:
        the state holder never blocks the router."""
        if self._started is None:
            loop = asyncio.get_running_loop()
            started = self._started = loop.create_future()

            async def first_sync() -> None:
                try:
                    await self.sync_now()
                except Exception:  # the loop keeps trying; decide on the configured split
                    self._sync_failed()
                self._sync_task = loop.create_task(self._sync_loop())
                started.set_result(None)

            # A fresh context: the loop outlives the request that started it (its log lines
            # must not carry that request's id).
            self._first_sync = loop.create_task(first_sync(), context=contextvars.Context())
        if not self._started.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._started), FIRST_SYNC_WAIT_S)
            except TimeoutError:
                pass
        if self._bg is not None:
            await self._blue_green_ready()

    async def _blue_green_ready(self) -> None:
        """Serve the arm this replica's clock says; with a view older than its lease, sync
        first (one sync for every request waiting), and refuse while that fails.

        Raises:
            StateUnavailableError: the view is stale and the state holder unreachable (503).
        """
        assert self._bg is not None
        if self._bg.stale(self._wall()):
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.get_running_loop().create_task(self.sync_now())
                self._refresh.add_done_callback(_retrieve)
            try:
                await asyncio.wait_for(asyncio.shield(self._refresh), self.spec.switch_lease_s)
            except Exception as exc:  # every waiting request sees it: the sync loop logs it
                log.debug("router %s: blue/green view refresh failed (%r)", self.spec.name, exc)
            if self._bg.stale(self._wall()):
                raise StateUnavailableError(
                    f"router {self.spec.name!r} cannot reach its state: its blue/green view is "
                    f"older than the lease ({self.spec.switch_lease_s} s), and serving it could "
                    "send traffic to an arm switched away from",
                    retry_after_s=max(1, round(self.spec.state.sync_interval_s)),
                )
        self._flip()

    def _flip(self) -> None:
        """Blue/green: put the whole split on the arm this replica's clock says."""
        assert self._bg is not None
        arm = self._bg.arm(self._wall())
        weights = [1.0 if i == arm else 0.0 for i in range(len(self.labels))]
        if weights != self.split.weights:
            self.split.set_weights(weights)

    async def _sync_loop(self) -> None:
        interval = self.spec.state.sync_interval_s
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
            # that lands as the event is set, and the loop would then never end.
            try:
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.sync_now()
            except Exception as exc:
                log.warning("router %s: state sync failed (%r); retrying", self.spec.name, exc)
                self._sync_failed()
                await asyncio.sleep(interval)

    def _sync_failed(self) -> None:
        if self._metrics is not None:
            self._metrics.sync_failed()


def _retrieve(task: asyncio.Task[None]) -> None:
    """Collect a background sync's outcome (its failure is logged where it is awaited)."""
    if not task.cancelled():
        task.exception()
