"""The router's shared state: snapshots, the change log, restarts and config changes (no Ray)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from graphs.spec import RouterNode
from routing.keys import feedback_keys
from routing.state import RouterState, config_hash
from routing.store import StateStore
from routing.tokens import ReplayedTokenError


def spec(**extra: Any) -> RouterNode:
    return RouterNode.model_validate(
        {"name": "split", "kind": "router", "arms": [{"target": "a"}, {"target": "b"}], **extra}
    )


def delta(a: int, b: int) -> dict[str, Any]:
    from routing.report import ExperimentStats

    stats = ExperimentStats(["a", "b"])
    for _ in range(a):
        stats.record("a", True, 5.0)
    for _ in range(b):
        stats.record("b", False, 9.0)
    return {"stats": stats.to_dict()}


def change(store: StateStore, state: RouterState, entry: dict[str, Any]) -> None:
    state.apply_logged(entry)
    store.append(entry)


def test_log_replay_over_snapshot_restores_everything(tmp_path: Any) -> None:
    node = spec(bandit={})
    store = StateStore(str(tmp_path), "app", "split")
    state, how = store.load(node, 0.0)
    assert how.startswith("fresh state")
    change(store, state, {"op": "sync", "now": 1.0, "delta": delta(3, 1)})
    store.snapshot(state, 2.0)
    for i in range(5):  # after the snapshot: only in the log
        claims = {"token_id": f"t{i}", "expires_at": 1e9}
        entry = {"op": "feedback", "now": 3.0, "claims": claims, "decisions": [[1]], "reward": 1}
        change(store, state, entry)
    change(store, state, {"op": "sync", "now": 4.0, "delta": delta(0, 2)})

    restored, how = StateStore(str(tmp_path), "app", "split").load(node, 5.0)
    assert "6 logged changes replayed" in how
    assert restored.to_dict() == state.to_dict()
    assert restored.bandit is not None and restored.bandit.stats["n"].tolist() == [0.0, 5.0]
    with pytest.raises(ReplayedTokenError):  # used tokens survive the restart too
        restored.feedback({"token_id": "t0", "expires_at": 1e9}, [[1]], 1.0, 6.0)


def test_a_torn_last_log_line_is_ignored(tmp_path: Any) -> None:
    node = spec()
    store = StateStore(str(tmp_path), "app", "split")
    state, _ = store.load(node, 0.0)
    change(store, state, {"op": "sync", "now": 1.0, "delta": delta(2, 0)})
    with open(store.log_path, "a") as f:
        f.write('{"op": "sync", "now": 2.0, "del')
    restored, how = StateStore(str(tmp_path), "app", "split").load(node, 3.0)
    assert "1 logged changes replayed" in how
    assert restored.stats.arms["a"].requests == 2


def test_a_changed_router_config_starts_fresh_and_keeps_the_old_state_aside(
    tmp_path: Any,
) -> None:
    store = StateStore(str(tmp_path), "app", "split")
    state, _ = store.load(spec(), 0.0)
    change(store, state, {"op": "sync", "now": 1.0, "delta": delta(2, 0)})
    store.snapshot(state, 1.0)
    changed = spec(ab={"key": {"header": "X-User-Id"}})
    assert config_hash(changed) != config_hash(spec())
    fresh, how = StateStore(str(tmp_path), "app", "split").load(changed, 2.0)
    assert "config changed" in how and fresh.stats.arms["a"].requests == 0
    assert any(name.endswith(".stale") for name in os.listdir(tmp_path / "app"))
    # replica counts and the like are not part of the learned state's identity
    assert config_hash(spec(num_replicas=3)) == config_hash(spec())


def test_snapshot_is_json_written_atomically(tmp_path: Any) -> None:
    store = StateStore(str(tmp_path), "app", "split")
    state, _ = store.load(spec(canary={"steps": [10, 100]}), 0.0)
    store.snapshot(state, 1.0)
    with open(store.snapshot_path) as f:
        saved = json.load(f)
    assert saved["config_hash"] == state.hash and saved["state"]["canary"]["status"] == "ramping"
    assert not os.path.exists(store.snapshot_path + ".tmp")
    assert os.path.getsize(store.log_path) == 0


def test_feedback_key_is_created_once_and_shared(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("SERVEGRAPH_FEEDBACK_KEY", raising=False)
    monkeypatch.delenv("SERVEGRAPH_FEEDBACK_KEY_PREVIOUS", raising=False)
    first, _ = feedback_keys("g", str(tmp_path))
    assert first == feedback_keys("g", str(tmp_path))[0] and len(first) >= 32
    assert oct(os.stat(tmp_path / "g" / "feedback.key").st_mode & 0o777) == "0o600"
    monkeypatch.setenv("SERVEGRAPH_FEEDBACK_KEY", "k" * 32)
    assert feedback_keys("g", str(tmp_path)) == (b"k" * 32, [])


# --- idempotent syncs ------------------------------------------------------------------------


def test_a_resent_delta_is_applied_once_and_the_ledger_survives_a_snapshot() -> None:
    state = RouterState(spec(), 0.0)
    first = {**delta(2, 1), "replica": "r1", "seq": 1}
    state.sync(first, 1.0)
    state.sync(first, 2.0)  # the reply was lost: resent
    state.sync({**delta(1, 0), "replica": "r2", "seq": 1}, 3.0)  # another replica's seq 1
    state.sync({**delta(0, 4), "replica": "r1", "seq": 2}, 4.0)
    assert state.stats.arms["a"].requests == 3 and state.stats.arms["b"].requests == 5
    assert state.summary(5.0)["duplicate_deltas"] == 1
    restored = RouterState.from_dict(spec(), state.to_dict())
    restored.sync({**delta(0, 4), "replica": "r1", "seq": 2}, 6.0)
    assert restored.stats.arms["b"].requests == 5
    restored.control("reset", {}, 7.0)  # a reset keeps the ledger: a resend still counts once
    restored.sync(first, 8.0)
    assert restored.stats.arms["a"].requests == 0


def test_the_ledger_forgets_silent_replicas_and_holds_a_bounded_number() -> None:
    from routing.ledger import ReplicaLedger

    ledger = ReplicaLedger(max_replicas=3, forget_after_s=100.0)
    for i in range(5):
        ledger.record(f"r{i}", 1, float(i))
    assert sorted(ledger.replicas) == ["r2", "r3", "r4"]  # the longest silent went first
    ledger.record("r4", 2, 150.0)
    assert sorted(ledger.replicas) == ["r4"]  # the others were silent for over 100 s
    assert ledger.applied("r4", 2) and not ledger.applied("r4", 3)
    assert not ledger.applied("r2", 1)  # forgotten


def test_a_resend_after_a_lost_reply_counts_once() -> None:
    import asyncio
    import random

    from graphs.replica import HandleRunner
    from routing.router import LocalState, Router

    class Arm:
        def remote(self, payload: Any, ctx: Any) -> Any:
            async def call() -> Any:
                return {}, ["a"], {}

            return call()

    class LosesReplies:
        """Applies the sync, then the reply is lost once."""

        def __init__(self, inner: LocalState):
            self.inner, self.lose = inner, False

        async def sync(self, *args: Any) -> dict[str, Any]:
            view = await self.inner.sync(*args)
            if self.lose:
                self.lose = False
                raise ConnectionError("reply lost")
            return view

    node = spec()
    holder = LocalState(node)
    link = LosesReplies(holder)
    router = Router(node, HandleRunner({"a": Arm(), "b": Arm()}), state=link, rng=random.Random(1))

    async def go() -> int:
        for i in range(10):
            await router({"x": i}, {})
        link.lose = True
        with pytest.raises(ConnectionError):
            await router.sync_now()
        for i in range(5):
            await router({"x": i}, {})
        await router.sync_now()
        return sum(arm.requests for arm in holder.state.stats.arms.values())

    assert asyncio.run(go()) == 15
    assert holder.state.ledger.duplicates == 1
