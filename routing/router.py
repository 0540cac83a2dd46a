"""The router deployment's logic: decide locally with the router's policy, sync in batches.

Per request a replica picks an arm with its local copy of the policy (weighted, sticky A/B,
canary ramp or bandit), calls the arm, records the outcome in its pending figures and, for a
shadow router, fires the mirror call in the background. Nothing on that path waits for another
process besides the arm itself. Every ``sync_interval_s`` (or ``sync_events`` requests) the
replica sends its figures to the router's state holder (:mod:`routing.state`) and takes back the
current weights, canary stage and bandit posterior.

Each delta a replica sends carries its random replica id and a sequence number, so the state
holder applies a resent delta once. A blue/green router flips to the other arm when its clock
passes the switch's instant (:mod:`routing.bluegreen`); with a view older than its lease it
syncs before serving, and answers 503 while it cannot.

A policy that fails to choose (a bandit whose statistics it cannot use, say) does not fail the
request: the router serves it with its static split, counts it (``policy_fallbacks`` in
``GET /<graph>/graph``, ``servegraph_router_policy_fallbacks``) and logs it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from nodes.calls import DECISIONS, ChainRunner, Payload, Result, meta_item
from nodes.failures import classify
from nodes.spec import refs
from nodes.tensors import to_json
from routing.ab import StickyAB, extract_key
from routing.arm_guard import ArmGuard
from routing.bandits import features_from_payload, make_bandit
from routing.bandits._base import Bandit
from routing.bluegreen import ReplicaSwitch
from routing.canary_events import CANARY_ARMS, CanaryDelta
from routing.errors import StateUnavailableError
from routing.fallback import StaticFallback
from routing.metrics import RouterMetrics
from routing.replica_sync import MAX_UNSENT, StateSync
from routing.report import ExperimentStats
from routing.shadow import InFlightLimiter, MirrorDecider
from routing.shadow_compare import ShadowComparator
from routing.shadow_log import RotatingJsonlWriter
from routing.spec import RouterNode
from routing.store import LocalState

# LocalState and RouterMetrics are re-exported: deployments and tests import them from here.
__all__ = ["MAX_UNSENT", "LocalState", "Router", "RouterMetrics"]

log = logging.getLogger(__name__)


class Router(StateSync):
    """Runs a router node: chooses an arm, calls it through ``runner``, mirrors to the shadow.

    Args:
        spec: the router node.
        runner: calls the arms' and the shadow's chains.
        state: the state holder; None creates (or finds) the router's Ray actor.
        metrics: where per-arm and shadow metrics go (None: nowhere; deployments pass
            :class:`RouterMetrics`).
        rng: random source for the split, mirror sampling and bandit draws.
        clock: monotonic clock for latencies and the sync period.
        wall_clock: wall clock (blue/green switches happen at a wall-clock instant).
        replica_id: this replica's id in its deltas (default: random).
    """

    def __init__(
        self,
        spec: RouterNode,
        runner: ChainRunner,
        *,
        state: Any = None,
        metrics: RouterMetrics | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
        replica_id: str | None = None,
    ):
        self.spec = spec
        self._runner = runner
        self._chains = [refs(arm.target) for arm in spec.arms]
        self.labels = [arm.label for arm in spec.arms]
        self._rng = rng or random.Random(spec.seed)
        self._clock = clock
        self._state = state
        self._metrics = metrics
        self.split = StickyAB(
            # Until the first sync: a canary's stable arm alone (its ramp comes from the state).
            [1.0, 0.0] if spec.canary is not None else spec.weights(),
            self._rng,
            arm_ids=self.labels,
            salt=spec.ab.salt if spec.ab is not None else "",
        )
        self._key = spec.ab.key if spec.ab is not None else None
        self._fallback = StaticFallback(spec, self._rng, clock)
        self.guard = ArmGuard(spec, runner, metrics)  # arm breakers, fallback
        self.bandit: Bandit | None = None
        if spec.bandit is not None:
            self.bandit = make_bandit(spec.bandit, len(spec.arms), self._rng)
        self._version = -1
        self._unsent: list[dict[str, Any]] = []
        # Not from ``rng``: seeded replicas would share it.
        self.replica_id = replica_id or secrets.token_hex(8)
        self._delta_seq = 0
        self._wall = wall_clock
        self._bg = (
            ReplicaSwitch(self.labels.index(spec.blue_green.active))
            if spec.blue_green is not None
            else None
        )
        self._refresh: asyncio.Task[None] | None = None
        self._canary: dict[str, Any] | None = None
        self._new_delta()
        # Shadow
        self._shadow_chain = refs(spec.shadow.target) if spec.shadow is not None else None
        if spec.shadow is not None:
            self._mirror = MirrorDecider(spec.shadow.fraction, self._rng)
            self._limiter = InFlightLimiter(spec.shadow.max_in_flight)
            self._sample_log = (
                RotatingJsonlWriter.from_config(spec.shadow.sample_log)
                if spec.shadow.sample_log is not None
                else None
            )
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        # Batched sync
        self._started: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self._sync_task: asyncio.Task[None] | None = None

    # --- the hot path ----------------------------------------------------------------------

    async def __call__(self, payload: Payload, ctx: dict[str, Any]) -> Result:
        await self._ensure_started()
        arm, decision = self._choose(payload, ctx)
        if not self.guard.admit(arm):  # the arm's breaker is open
            if self.guard.can_fall_back(ctx):
                return await self.guard.fall_back(arm, "breaker_open", payload, ctx)
            raise self.guard.shed_error(arm)
        start = self._clock()
        try:
            out, served, notes = await self._runner.call(self._chains[arm], payload, ctx)
        except BaseException as exc:
            ok = self.guard.ended(arm, exc)
            self._record(arm, ok, start)
            if ok is False and isinstance(exc, Exception) and self.guard.can_fall_back(ctx, exc):
                return await self.guard.fall_back(arm, "error", payload, ctx)
            raise
        self._record(arm, self.guard.ended(arm, None), start)
        if self._shadow_chain is not None and not ctx.get("shadow"):
            self._start_shadow(payload, ctx, out)
        return out, served, {**notes, DECISIONS: [decision, *notes.get(DECISIONS, [])]}

    async def stream(self, payload: Payload, ctx: dict[str, Any]) -> AsyncIterator[Payload]:
        """Stream the chosen arm's output (LLM arms); the decision travels in a meta item first.
        Shadows are not mirrored for streams, nor do they fall back (a shed arm answers 503)."""
        await self._ensure_started()
        arm, decision = self._choose(payload, ctx)
        if not self.guard.admit(arm):
            raise self.guard.shed_error(arm)
        yield meta_item([], {DECISIONS: [decision]})
        start, error = self._clock(), None
        try:
            async for item in self._runner.stream(self._chains[arm], payload, ctx):
                yield item
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._record(arm, self.guard.ended(arm, error), start)

    def _choose(self, payload: Payload, ctx: Mapping[str, Any]) -> tuple[int, list[Any]]:
        """The arm for one request and the decision a feedback token will carry.

        Raises:
            RequestValidationError: a LinUCB feature is missing, non-finite or outside the
                router's ``feature_range`` (422, naming ``inputs.<feature>``).
        """
        if self.bandit is not None:
            context = None
            config = self.spec.bandit
            if config is not None and config.algorithm == "linucb":
                context = features_from_payload(
                    payload,
                    config.features,
                    intercept=config.intercept,
                    bounds=config.feature_range,
                    prefix="inputs.",
                )
            try:
                arm = self._checked(self.bandit.choose(context))
            except Exception as exc:
                arm = self._fall_back(None, ctx, exc)
            return arm, [self.spec.name, arm] + ([context] if context is not None else [])
        key = extract_key(self._key, ctx.get("headers"), payload) if self._key else None
        try:
            arm = self._checked(self.split.choose(key))
        except Exception as exc:
            arm = self._fall_back(key, ctx, exc)
        return arm, [self.spec.name, arm]

    def _checked(self, arm: Any) -> int:
        if isinstance(arm, bool) or not 0 <= arm < len(self.labels):
            raise ValueError(f"policy chose arm {arm!r} of {len(self.labels)}")
        return int(arm)

    def _fall_back(self, key: str | None, ctx: Mapping[str, Any], exc: Exception) -> int:
        if self._metrics is not None:
            self._metrics.fallback()
        return self._fallback.choose(key, ctx.get("request_id"), exc)

    @property
    def policy_fallbacks(self) -> int:
        """Requests this replica served with the static split because the policy failed."""
        return self._fallback.count

    def _record(self, arm: int, ok: bool | None, start: float) -> None:
        """Count one request of ``arm``: ok or failed; a request its caller cancelled (None)
        counts as neither (see :class:`~routing.arm_guard.ArmGuard`)."""
        if ok is None:
            return
        latency_ms = (self._clock() - start) * 1000.0
        self._stats.record(self.labels[arm], ok, latency_ms)
        if self._metrics is not None:
            self._metrics.request(self.labels[arm], ok, latency_ms)
        if self._canary_delta is not None:
            self._canary_delta.record(CANARY_ARMS[arm], ok, latency_ms)
        self._events += 1
        if self._events >= self.spec.state.sync_events:
            self._wake.set()

    # --- shadow ------------------------------------------------------------------------------

    def _start_shadow(self, payload: Payload, ctx: dict[str, Any], primary: Payload) -> None:
        if not self._mirror.should_mirror():
            return
        self._shadow_counts["mirrored"] += 1
        if not self._limiter.try_acquire():
            self._shadow_counts["dropped"] += 1
            self._shadow_outcome("dropped")
            return
        task = asyncio.get_running_loop().create_task(self._shadow(payload, ctx, primary))
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow(self, payload: Payload, ctx: dict[str, Any], primary: Payload) -> None:
        assert self.spec.shadow is not None and self._shadow_chain is not None
        try:
            out, _, _ = await asyncio.wait_for(
                self._runner.call(self._shadow_chain, payload, {**ctx, "shadow": True}),
                self.spec.shadow.timeout_s,
            )
        except TimeoutError:
            self._shadow_counts["timeouts"] += 1  # counted apart from errors
            self._shadow_outcome("timeout")
            return
        except Exception as exc:  # a shadow's failure is counted, never raised
            log.debug("shadow call of router %s failed: %r", self.spec.name, exc)
            self._shadow_cmp.record_error()
            self._shadow_outcome("error")
            return
        finally:
            self._limiter.release()
        primary_json, shadow_json = to_json(primary), to_json(out)
        pair = self._shadow_cmp.compare(primary_json, shadow_json)
        self._shadow_outcome("compared", pair)
        log_config = self.spec.shadow.sample_log
        if self._sample_log is not None and log_config is not None:
            if self._rng.random() < log_config.fraction:
                self._sample_log.write(
                    {
                        "request_id": ctx.get("request_id"),
                        "input": to_json(payload),
                        "primary": primary_json,
                        "shadow": shadow_json,
                        "comparison": pair.to_dict(),
                    }
                )

    def _shadow_outcome(self, outcome: str, pair: Any = None) -> None:
        if self._metrics is not None:
            self._metrics.shadow_call(outcome, pair)

    # --- batched sync with the state holder ----------------------------------------------------

    def _new_delta(self) -> None:
        self._stats = ExperimentStats(self.labels)
        self._canary_delta = (
            CanaryDelta(self._canary["run"], self._canary["stage"])
            if self._canary is not None
            else None
        )
        self._shadow_cmp = ShadowComparator(self.spec.shadow.fields if self.spec.shadow else None)
        self._shadow_counts = {"mirrored": 0, "dropped": 0, "timeouts": 0}
        self._events = 0

    def _take_delta(self) -> dict[str, Any]:
        shadow = self._shadow_cmp
        if not (
            self._events or shadow.compared or shadow.shadow_errors or self._fallback.unsent
        ) and not any(self._shadow_counts.values()):
            return {}
        self._delta_seq += 1
        delta: dict[str, Any] = {
            "replica": self.replica_id,
            "seq": self._delta_seq,
            "stats": self._stats.to_dict(),
        }
        if self._fallback.unsent:
            delta["fallbacks"] = self._fallback.take_unsent()
        if self._canary_delta is not None:
            delta["canary"] = self._canary_delta.to_dict()
        if self.spec.shadow is not None:
            delta["shadow"] = {"comparator": self._shadow_cmp.to_dict(), **self._shadow_counts}
        self._new_delta()
        return delta

    # --- feedback, control, views ----------------------------------------------------------------

    async def feedback(
        self, claims: dict[str, Any], decisions: list[list[Any]], reward: float
    ) -> dict[str, Any]:
        """Apply a verified token's reward to this router's decisions (in the state holder;
        see :meth:`~routing.replica_sync.StateSync.send_feedback`)."""
        result = await self.send_feedback(claims, decisions, reward)
        if self._metrics is not None:
            for decision in decisions:
                self._metrics.rewarded(self.labels[int(decision[0])], reward)
        self._wake.set()  # pick up the new posterior soon
        return result

    async def control(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """An operator action; this replica adopts the result at once, the others at next sync."""
        state = await self._get_state()
        result = await state.control(action, body)
        self._adopt(result.pop("view"))
        return result

    async def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        """Serve ``user_config``: ``{"weights": [...]}`` changes the split without a restart."""
        unknown = set(user_config) - {"weights"}
        if unknown:
            raise ValueError(
                f"router {self.spec.name!r} user_config takes 'weights' only, got {sorted(unknown)}"
            )
        if "weights" in user_config:
            await self.control("user_config", {"weights": list(user_config["weights"])})

    async def state(self) -> dict[str, Any]:
        """Live state for ``GET /<graph>/graph`` (from the state holder). A sync that fails
        (e.g. its log cannot be written) does not hide the holder's figures, failures included."""
        unsynced = None
        try:
            await self.sync_now()
        except Exception as exc:
            unsynced = f"this replica's figures could not be synced: {exc!r}"
        try:
            state = await self._get_state()
            summary = {**await state.summary(), **self.guard.state()}
            return {**summary, "sync_error": unsynced} if unsynced else summary
        except Exception as exc:
            return {
                "policy": self.spec.policy,
                "arms": self.labels,
                "weights": self.split.weights,
                "policy_fallbacks": self.policy_fallbacks,  # this replica's only
                "error": f"state holder unavailable: {exc!r}",
            }

    async def experiments(self) -> dict[str, Any]:
        """The experiment report (this replica's pending figures are sent first)."""
        try:
            await self.sync_now()
            report = await (await self._get_state()).report()
        except Exception as exc:  # the state holder is gone or restarting: 503, not 500
            if classify(exc) is None:
                raise
            raise StateUnavailableError(
                f"router {self.spec.name!r}: its state holder is unreachable "
                f"({type(exc).__name__}); retry later"
            ) from None
        return {**report, **self.guard.state()}

    def shadow_in_flight(self) -> int:
        """Shadow calls running now."""
        return len(self._shadow_tasks)
