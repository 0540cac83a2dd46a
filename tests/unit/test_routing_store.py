"""The router state's files and holder without Ray: log before apply, fsync policy, recovery from
torn and corrupt logs and snapshots, disk full and read-only folders, idempotent resends."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import random
from typing import IO, Any

import pytest

from graphs.replica import HandleRunner
from graphs.spec import RouterNode
from routing.errors import StateUnavailableError
from routing.journal import StateStore
from routing.report import ExperimentStats
from routing.router import Router
from routing.state import RouterState
from routing.store import RouterStateActor


def spec(tmp_path: Any, **extra: Any) -> RouterNode:
    return RouterNode.model_validate(
        {
            "name": "split",
            "kind": "router",
            "arms": [{"target": "a"}, {"target": "b"}],
            "state": {"dir": str(tmp_path), **extra.pop("state", {})},
            **extra,
        }
    )


def delta(a: int, b: int = 0, replica: str | None = None, seq: int = 0) -> dict[str, Any]:
    stats = ExperimentStats(["a", "b"])
    for _ in range(a):
        stats.record("a", True, 5.0)
    for _ in range(b):
        stats.record("b", True, 5.0)
    out: dict[str, Any] = {"stats": stats.to_dict()}
    if replica is not None:
        out.update(replica=replica, seq=seq)
    return out


def sync(now: float, a: int, **kw: Any) -> dict[str, Any]:
    return {"op": "sync", "now": now, "delta": delta(a, **kw)}


def requests(state: RouterState) -> int:
    return sum(arm.requests for arm in state.stats.arms.values())


def logged(store: StateStore, state: RouterState, *entries: dict[str, Any]) -> None:
    """Log, then apply: what the state holder does."""
    batch = [dict(e) for e in entries]
    done, error = store.log(batch)
    assert error is None and done == len(batch)
    for entry in batch:
        try:
            store.apply(state, entry)
        except Exception:
            pass


class Disk:
    """Injected file system faults: a read-only folder, a full disk (after ``room`` more
    writes, the next write puts half its bytes out and fails), counted fsyncs."""

    def __init__(self) -> None:
        self.readonly = False
        self.room: int | None = None
        self.truncate_fails = False
        self.fsyncs = 0

    def open(self, path: str, mode: str) -> IO[bytes]:
        if self.readonly:
            raise OSError(errno.EROFS, "Read-only file system", path)
        return FaultyFile(open(path, mode, buffering=0), self)  # type: ignore[return-value]

    def fsync(self, fd: int) -> None:
        self.fsyncs += 1
        os.fsync(fd)


class FaultyFile:
    def __init__(self, f: Any, disk: Disk):
        self.f, self.disk = f, disk

    def write(self, data: Any) -> int:
        if self.disk.room is not None:
            if self.disk.room <= 0:
                self.f.write(bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
            self.disk.room -= 1
        return int(self.f.write(data))

    def truncate(self, size: int) -> int:
        if self.disk.truncate_fails:
            raise OSError(errno.EIO, "I/O error")
        return int(self.f.truncate(size))

    def flush(self) -> None:
        self.f.flush()

    def fileno(self) -> int:
        return int(self.f.fileno())

    def close(self) -> None:
        self.f.close()

    def __enter__(self) -> FaultyFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --- recovery --------------------------------------------------------------------------------


def test_a_torn_last_line_is_dropped_and_the_next_load_keeps_what_came_after(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    node = spec(tmp_path)
    store = StateStore(str(tmp_path), "app", "split")
    state, _ = store.load(node, 0.0)
    logged(store, state, sync(1.0, 2), sync(2.0, 3))
    with open(store.log_path, "ab") as f:
        f.write(b'{"op":"sync","now":3.0,"seq":3,"del')  # the process died mid-write
    again = StateStore(str(tmp_path), "app", "split")
    with caplog.at_level(logging.ERROR):
        restored, how = again.load(node, 4.0)
    assert "2 logged changes replayed" in how and requests(restored) == 5
    assert restored.recovery is not None
    assert restored.recovery["log_lines_dropped"] == 1
    assert restored.recovery["lost"].startswith("nothing acknowledged")
    assert restored.summary(4.0)["recovery"] == restored.recovery
    assert any("recovered" in r.getMessage() for r in caplog.records)
    # Changes after the reload go to a new segment: the torn line never hides them.
    logged(again, restored, sync(5.0, 4))
    final, _ = StateStore(str(tmp_path), "app", "split").load(node, 6.0)
    assert requests(final) == 9 and final.to_dict() == restored.to_dict()


def test_a_corrupt_line_in_the_middle_ends_the_replay_and_says_what_was_lost(
    tmp_path: Any,
) -> None:
    node = spec(tmp_path)
    store = StateStore(str(tmp_path), "app", "split")
    state, _ = store.load(node, 0.0)
    logged(store, state, *(sync(float(i), 1) for i in range(1, 6)))
    with open(store.log_path, "rb") as f:
        lines = f.read().split(b"\n")
    lines[2] = b"\x00garbage\xff"  # seq 3 rotted on disk
    with open(store.log_path, "wb") as f:
        f.write(b"\n".join(lines))
    restored, _ = StateStore(str(tmp_path), "app", "split").load(node, 9.0)
    assert requests(restored) == 2  # the valid prefix: seq 1 and 2
    recovery = restored.recovery
    assert recovery is not None and recovery["log_entries_replayed"] == 2
    assert recovery["log_lines_dropped"] == 3 and "seq 3" in recovery["lost"]


def test_a_truncated_snapshot_falls_back_to_the_previous_one_and_loses_nothing(
    tmp_path: Any,
) -> None:
    node = spec(tmp_path, bandit={})
    store = StateStore(str(tmp_path), "app", "split")
    state, _ = store.load(node, 0.0)
    logged(store, state, sync(1.0, 2))
    store.snapshot(state, 2.0)  # becomes the previous snapshot
    claims = {"token_id": "t1", "expires_at": 1e9}
    reward = {"op": "feedback", "now": 3.0, "claims": claims, "decisions": [[1]], "reward": 1}
    logged(store, state, sync(3.0, 3), reward)
    store.snapshot(state, 4.0)
    logged(store, state, sync(5.0, 4))
    assert os.path.exists(store.prev_snapshot_path)
    with open(store.snapshot_path, "r+b") as f:
        f.truncate(os.path.getsize(store.snapshot_path) // 2)

    restored, _ = StateStore(str(tmp_path), "app", "split").load(node, 6.0)
    assert restored.to_dict() == state.to_dict()  # previous snapshot + both log segments
    assert "t1" in restored.replay
    recovery = restored.recovery
    assert recovery is not None and recovery["snapshot"].startswith("corrupt: ")
    assert "used previous snapshot of 2.0" in recovery["snapshot"]
    assert recovery["log_entries_replayed"] == 3 and recovery["log_lines_dropped"] == 0


def test_an_unreadable_snapshot_without_a_previous_one_is_rebuilt_from_the_log(
    tmp_path: Any,
) -> None:
    node = spec(tmp_path)
    store = StateStore(str(tmp_path), "app", "split")
    state, _ = store.load(node, 0.0)
    logged(store, state, sync(1.0, 2))
    store.snapshot(state, 2.0)
    logged(store, state, sync(3.0, 5))
    with open(store.snapshot_path, "w") as f:
        f.write('["not", "a", "snapshot"]')
    restored, _ = StateStore(str(tmp_path), "app", "split").load(node, 4.0)
    assert requests(restored) == 7
    recovery = restored.recovery
    assert recovery is not None and "not a snapshot" in recovery["snapshot"]
    assert "rebuilt from the log" in recovery["snapshot"]


def test_the_actor_always_starts_and_reports_what_it_lost(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    node = spec(tmp_path)
    store = StateStore(str(tmp_path), "app", "split")
    state, _ = store.load(node, 0.0)
    logged(store, state, *(sync(float(i), 1) for i in range(1, 4)))
    store.snapshot(state, 4.0)
    logged(store, state, sync(5.0, 1))
    store.snapshot(state, 6.0)  # the log before the previous snapshot (seq 3) is pruned
    for path in (store.snapshot_path, store.prev_snapshot_path):
        with open(path, "wb") as f:
            f.write(b"\x00\x01")
    with caplog.at_level(logging.ERROR):
        actor = RouterStateActor("app", node)
    summary = asyncio.run(actor.summary())
    assert summary["recovery"]["snapshot"].startswith("corrupt: ")
    assert "previous snapshot corrupt too" in summary["recovery"]["snapshot"]
    assert "seq 1" in summary["recovery"]["lost"]  # pruned: the log no longer reaches seq 1
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_snapshots_rotate_keep_one_previous_and_prune_the_log_it_no_longer_needs(
    tmp_path: Any,
) -> None:
    node = spec(tmp_path)
    store = StateStore(str(tmp_path), "app", "split")
    state, _ = store.load(node, 0.0)
    for i in range(4):
        logged(store, state, sync(float(i), 1))
        store.snapshot(state, float(i) + 0.5)
    folder = tmp_path / "app"
    assert json.loads((folder / "split.prev.json").read_text())["seq"] == 3
    assert json.loads((folder / "split.json").read_text())["seq"] == 4
    # Kept: the segment after the previous snapshot (seq 4) and the new, empty one.
    segments = sorted(os.listdir(folder / "split.changes"))
    assert segments == ["000000000004-0.jsonl", "000000000005-0.jsonl"]


# --- log before apply, failures, fsync ------------------------------------------------------


def actor_with(tmp_path: Any, disk: Disk, **extra: Any) -> RouterStateActor:
    return RouterStateActor("app", spec(tmp_path, **extra), opener=disk.open, fsync=disk.fsync)


def test_a_change_that_cannot_be_logged_is_refused_with_503_and_changes_nothing(
    tmp_path: Any,
) -> None:
    disk = Disk()
    actor = actor_with(tmp_path, disk, bandit={})
    before = actor.state.to_dict()
    disk.readonly = True

    async def go() -> None:
        with pytest.raises(StateUnavailableError) as info:
            await actor.feedback({"token_id": "t", "expires_at": 1e12}, [[0]], 1.0)
        assert info.value.status_code == 503 and info.value.retry_after_s >= 1
        assert "Read-only" in str(info.value)
        with pytest.raises(StateUnavailableError):
            await actor.sync([delta(3)], -1)

    asyncio.run(go())
    assert actor.state.to_dict() == before and "t" not in actor.state.replay
    assert actor.log_failures == 2


def test_a_write_cut_short_by_a_full_disk_leaves_nothing_behind(tmp_path: Any) -> None:
    disk = Disk()
    actor = actor_with(tmp_path, disk)

    async def go() -> None:
        await actor.sync([delta(1, replica="r", seq=1)], -1)
        disk.room = 2  # the third delta's write fails half-way
        with pytest.raises(StateUnavailableError, match="No space"):
            await actor.sync([delta(1, replica="r", seq=s) for s in (2, 3, 4, 5)], -1)
        assert requests(actor.state) == 3  # logged, so applied: the first two
        disk.room = None
        # The replica resends its whole batch: what was applied counts once.
        await actor.sync([delta(1, replica="r", seq=s) for s in (2, 3, 4, 5)], -1)

    asyncio.run(go())
    assert requests(actor.state) == 5 and actor.state.ledger.duplicates == 2
    restored, _ = StateStore(str(tmp_path), "app", "split").load(actor.spec, 9.0)
    assert restored.recovery is None  # the half-written line was cut away
    assert restored.to_dict() == actor.state.to_dict()


def test_an_abandoned_segment_is_superseded_by_the_next(tmp_path: Any) -> None:
    disk = Disk()
    actor = actor_with(tmp_path, disk)

    async def go() -> None:
        await actor.sync([delta(1)], -1)
        disk.room, disk.truncate_fails = 0, True  # a partial line stays in the file
        with pytest.raises(StateUnavailableError):
            await actor.sync([delta(2)], -1)
        disk.room, disk.truncate_fails = None, False
        await actor.sync([delta(4)], -1)

    asyncio.run(go())
    assert requests(actor.state) == 5
    restored, _ = StateStore(str(tmp_path), "app", "split").load(actor.spec, 9.0)
    assert restored.to_dict() == actor.state.to_dict()


@pytest.mark.parametrize(("policy", "fsyncs"), [("batch", 1), ("always", 3), ("never", 0)])
def test_the_fsync_policy_forces_the_log_per_call_per_change_or_never(
    tmp_path: Any, policy: str, fsyncs: int
) -> None:
    disk = Disk()
    actor = actor_with(tmp_path, disk, state={"fsync": policy})
    asyncio.run(actor.sync([delta(1), delta(2), delta(3)], -1))
    assert disk.fsyncs == fsyncs
    disk.fsyncs = 0
    assert asyncio.run(actor.flush())
    # A snapshot: its temporary file and the folder (and no used token ids to write).
    assert disk.fsyncs == (0 if policy == "never" else 2)


def test_failed_snapshots_back_off_are_counted_and_catch_up_when_the_disk_recovers(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Clock:
        t = 100.0

        def __call__(self) -> float:
            return self.t

    class Metrics:
        kinds: list[str] = []

        def failure(self, kind: str) -> None:
            self.kinds.append(kind)

    disk, clock, metrics = Disk(), Clock(), Metrics()
    node = spec(tmp_path)
    actor = RouterStateActor(
        "app", node, clock=clock, opener=disk.open, fsync=disk.fsync, metrics=metrics
    )
    asyncio.run(actor.sync([delta(2)], -1))
    disk.readonly = True
    with caplog.at_level(logging.ERROR):
        actor.tick_once()  # fails: retried in 1 s, then 2 s, 4 s ...
        actor.tick_once()  # not due yet
        clock.t += 1.0
        actor.tick_once()
        clock.t += 1.0
        actor.tick_once()  # not due (2 s backoff)
    assert actor.snapshot_failures == 2 and metrics.kinds == ["snapshot", "snapshot"]
    assert any("snapshot failed" in r.getMessage() for r in caplog.records)
    summary = asyncio.run(actor.summary())
    assert summary["snapshot_failures"] == 2 and summary["log_failures"] == 0
    disk.readonly = False
    clock.t += 1.0
    actor.tick_once()
    assert actor.snapshot_failures == 2 and not actor._dirty
    saved = json.loads((tmp_path / "app" / "split.json").read_text())
    assert saved["seq"] == 1 and saved["state"]["stats"]["a"]["requests"] == 2


def test_a_replica_keeps_its_figures_while_the_disk_is_full_and_they_count_once(
    tmp_path: Any,
) -> None:
    class Arm:
        def remote(self, payload: Any, ctx: Any) -> Any:
            async def call() -> Any:
                return {"ok": True}, ["a"], {}

            return call()

    disk = Disk()
    node = spec(tmp_path)
    actor = RouterStateActor("app", node, opener=disk.open, fsync=disk.fsync)
    runner = HandleRunner({"a": Arm(), "b": Arm()})
    router = Router(node, runner, state=actor, rng=random.Random(1))

    async def go() -> None:
        for i in range(10):
            await router({"x": i}, {})
        disk.room = 0
        with pytest.raises(StateUnavailableError):
            await router.sync_now()
        for i in range(5):
            await router({"x": i}, {})
        with pytest.raises(StateUnavailableError):
            await router.sync_now()
        disk.room = None
        await router.sync_now()

    asyncio.run(go())
    assert requests(actor.state) == 15 and actor.log_failures == 2


def test_a_refused_change_is_logged_first_and_replays_as_refused(tmp_path: Any) -> None:
    from routing.tokens import ReplayedTokenError

    node = spec(tmp_path, bandit={})
    actor = RouterStateActor("app", node)
    claims = {"token_id": "t", "expires_at": 1e12}

    async def go() -> None:
        await actor.feedback(claims, [[1]], 1.0)
        with pytest.raises(ReplayedTokenError):
            await actor.feedback(claims, [[0]], 1.0)

    asyncio.run(go())
    with open(actor.store.log_path) as f:
        assert [json.loads(line)["seq"] for line in f] == [1, 2]  # both logged
    restored, how = StateStore(str(tmp_path), "app", "split").load(node, 9.0)
    assert "1 logged changes replayed, 1 refused" in how and restored.recovery is None
    assert restored.to_dict() == actor.state.to_dict()
