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
