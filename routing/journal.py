"""A router's state on disk: snapshots, a numbered change log, and recovery from damage.

Files of router ``r`` of application ``app`` under the state folder:

- ``app/r.json``: the last snapshot, ``{"snapshot_version", "config_hash", "saved_at", "seq",
  "state"}``; ``app/r.prev.json``: the one before it. Both written atomically (temporary file,
  fsync, rename, fsync of the folder).
- ``app/r.changes/<start>-<n>.jsonl``: the change log, numbered and in segments
  (:class:`~routing.changelog.ChangeLog`).
- ``app/r.replay/``: used feedback token ids (:class:`~routing.replay.ReplaySegments`).

Loading takes the last good snapshot (``r.json``, else ``r.prev.json``: the log segments since
the previous snapshot are kept until the next one) and replays the valid prefix of the log after
its ``seq``: changes in order while their numbers follow on. An unreadable line whose successor
follows on was a write that never completed (refused, never applied); a gap in the numbers
ends the replay, and what lies beyond it is reported lost. Loading never raises for damage and
never waits: it reports what it recovered and lost (:attr:`StateStore.recovery`, an ERROR log
line, ``recovery`` in ``GET /<graph>/graph``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from routing.changelog import FSYNC_POLICIES, ChangeLog, FsyncPolicy, Opener, open_unbuffered
from routing.keys import config_hash
from routing.replay import ReplaySegments
from routing.spec import RouterNode
from routing.state import RouterState

__all__ = ["FSYNC_POLICIES", "SNAPSHOT_VERSION", "Opener", "StateStore"]

log = logging.getLogger(__name__)

#: 2: the used token ids moved out of the snapshot; 3: sequence numbers, previous snapshot kept.
SNAPSHOT_VERSION = 3


class StateStore:
    """A router's snapshots and change log (see the module's docstring for the files).

    Args:
        directory: the state folder (:func:`~routing.keys.state_dir`).
        app: the Serve application's name.
        router: the router node's name.
        fsync_policy: ``batch`` (:meth:`log` forces its entries to disk once), ``always``
            (after every entry) or ``never``; snapshots are fsynced unless ``never``.
        opener: opens files for writing (tests inject failures: disk full, read-only folder).
        fsync: forces a file descriptor to disk (tests count the calls).
    """

    def __init__(
        self,
        directory: str,
        app: str,
        router: str,
        *,
        fsync_policy: FsyncPolicy = "batch",
        opener: Opener | None = None,
        fsync: Callable[[int], None] = os.fsync,
    ):
        if fsync_policy not in FSYNC_POLICIES:
            raise ValueError(f"fsync_policy must be one of {FSYNC_POLICIES}, got {fsync_policy!r}")
        self.router = router
        self.folder = os.path.join(directory, app)
        self.snapshot_path = os.path.join(self.folder, f"{router}.json")
        self.prev_snapshot_path = os.path.join(self.folder, f"{router}.prev.json")
        log_dir = os.path.join(self.folder, f"{router}.changes")
        try:
            os.makedirs(log_dir, exist_ok=True)
        except OSError as exc:  # a read-only or missing volume: loading still works
            log.error("router %s: cannot create %s (%r)", router, log_dir, exc)
        self.segments = ReplaySegments(os.path.join(self.folder, f"{router}.replay"))
        self.fsync_policy = fsync_policy
        self._opener = opener or open_unbuffered
        self._fsync = fsync
        self.changes = ChangeLog(
            log_dir,
            os.path.join(self.folder, f"{router}.log"),
            fsync_policy=fsync_policy,
            opener=self._opener,
            fsync=fsync,
        )
        self._unsaved: list[tuple[str, float, int]] = []
        self._applying: int | None = None
        # Sequence numbers of the snapshots on disk known good (None: none, or unreadable).
        self._cur_seq: int | None = None
        self._prev_seq: int | None = None
        #: What the last :meth:`load` recovered and lost; None after a clean load.
        self.recovery: dict[str, Any] | None = None

    # --- loading -----------------------------------------------------------------------------

    def load(self, spec: RouterNode, now: float) -> tuple[RouterState, str]:
        """The saved state with its log replayed, or a fresh one; and a line saying which.
        Never raises for a damaged snapshot or log: see :attr:`recovery`."""
        self.close()
        self.recovery = None
        with contextlib.suppress(OSError):
            os.remove(self.snapshot_path + ".tmp")
        cur, cur_state, cur_problem = self._read_snapshot(self.snapshot_path, spec)
        prev, prev_state, prev_problem = self._read_snapshot(self.prev_snapshot_path, spec)
        base = cur if cur is not None else prev
        if base is not None and base.get("config_hash") != config_hash(spec):
            return self._set_aside(spec, now)
        self._cur_seq = int(cur.get("seq", 0)) if cur is not None else None
        self._prev_seq = int(prev.get("seq", 0)) if prev is not None else None
        state = cur_state or prev_state or RouterState(spec, now)
        snapshot_note = self._snapshot_note(cur, cur_problem, prev, prev_problem)
        base_seq = int(base.get("seq", 0)) if base is not None else 0
        saved_at = float(base.get("saved_at", 0.0)) if base is not None else -math.inf
        # Ids used before the snapshot first, as the live guard had them; the replay marks the
        # later ones again, exactly as live.
        try:
            persisted = list(self.segments.entries(now))
        except OSError as exc:
            log.error("router %s: used token ids unreadable (%r)", self.router, exc)
            persisted = []
        state.replay.remember(((t, f) for t, f, s in persisted if s <= base_seq), saved_at)
        state.replay.on_mark = self._mark
        report = self._replay(state, base_seq)
        state.replay.remember(((t, f) for t, f, _ in persisted), now)
        saved_ids = {t for t, _, _ in persisted}
        self._unsaved = [u for u in self._unsaved if u[0] not in saved_ids]
        remembered = len(saved_ids)
        replayed = report["replayed"] + report["refused"]
        if snapshot_note is not None or report["dropped"]:
            self.recovery = {
                "at": now,
                "snapshot": snapshot_note or "ok",
                "log_entries_replayed": replayed,
                "log_lines_dropped": report["dropped"],
                "lost": report["lost"] or "nothing acknowledged",
            }
            state.recovery = dict(self.recovery)
            log.error("router %s: state recovered after damage: %s", self.router, self.recovery)
        how = "fresh state" if base is None else f"snapshot of {base.get('saved_at')}"
        skipped = f", {report['refused']} refused" if report["refused"] else ""
        return state, (
            f"{how}, {report['replayed']} logged changes replayed{skipped}, "
            f"{remembered} used token ids loaded"
        )

    def _read_snapshot(
        self, path: str, spec: RouterNode
    ) -> tuple[dict[str, Any] | None, RouterState | None, str | None]:
        """The snapshot at ``path`` and its state (None when it belongs to another config);
        or None, None and what is wrong with it (None: it does not exist)."""
        try:
            with open(path, "rb") as f:
                saved = json.loads(f.read())
            if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict):
                return None, None, "not a snapshot"
            if saved.get("config_hash") != config_hash(spec):
                return saved, None, None
            return saved, RouterState.from_dict(spec, saved["state"]), None
        except FileNotFoundError:
            return None, None, None
        except Exception as exc:  # any damage: unreadable, truncated, wrong shape
            return None, None, f"{type(exc).__name__}: {exc}"[:300]

    @staticmethod
    def _snapshot_note(
        cur: Mapping[str, Any] | None,
        cur_problem: str | None,
        prev: Mapping[str, Any] | None,
        prev_problem: str | None,
    ) -> str | None:
        """What went wrong with the snapshots (None: nothing, or there were none yet)."""
        if cur is not None or (cur_problem is None and prev is None and prev_problem is None):
            return None
        note = f"corrupt: {cur_problem}" if cur_problem is not None else "missing"
        if prev is not None:
            return f"{note}; used previous snapshot of {prev.get('saved_at')}"
        if prev_problem is not None:
            note += f"; previous snapshot corrupt too: {prev_problem}"
        return note + "; rebuilt from the log alone"

    def _replay(self, state: RouterState, base_seq: int) -> dict[str, Any]:
        """Apply the log's changes after ``base_seq`` while their numbers follow on."""
        applied = base_seq
        replayed = refused = dropped = 0
        gap_at: int | None = None
        for path, number, seq, entry in self.changes.entries():
            if seq <= applied:
                continue  # already in the state
            if entry is None or seq > applied + 1:
                dropped += 1
                if entry is not None and gap_at is None:
                    gap_at = applied + 1
                continue
            self._applying = seq
            try:
                state.apply_logged(entry)
                replayed += 1
            except Exception as exc:
                # Logged before it was applied, and refused then as now: it changed nothing.
                log.debug("%s line %d: logged change refused (%r)", path, number, exc)
                refused += 1
            finally:
                self._applying = None
            applied = seq
        self.changes.restart(applied)
        lost = None
        if gap_at is not None:
            lost = f"the changes from seq {gap_at} on: the log is damaged there"
        elif dropped:
            lost = f"nothing acknowledged ({dropped} unreadable lines were writes cut short)"
        return {"replayed": replayed, "refused": refused, "dropped": dropped, "lost": lost}

    def _set_aside(self, spec: RouterNode, now: float) -> tuple[RouterState, str]:
        """The router's config changed: its files go aside (``*.stale``), a fresh state starts."""
        stale = f"{self.snapshot_path}.{int(now)}.stale"
        for path, aside in (
            (self.snapshot_path, stale),
            (self.prev_snapshot_path, f"{self.prev_snapshot_path}.{int(now)}.stale"),
            (self.changes.folder, f"{self.changes.folder}.{int(now)}.stale"),
            (self.changes.legacy_path, f"{self.changes.legacy_path}.{int(now)}.stale"),
        ):
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, aside)
        self._cur_seq, self._prev_seq = None, None
        self.changes.restart(0)
        state = RouterState(spec, now)
        state.replay.on_mark = self._mark
        remembered = state.replay.remember(self.segments.load(now), now)
        return state, (
            f"router config changed; previous state kept in {stale}, "
            f"{remembered} used token ids loaded"
        )

    # --- the change log ----------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """Sequence number of the last change logged (every logged change is applied)."""
        return self.changes.seq

    @property
    def log_path(self) -> str:
        """The log segment being written (or the one the next change starts)."""
        return self.changes.path

    def _mark(self, token_id: str, forget_at: float) -> None:
        seq = self._applying if self._applying is not None else self.seq + 1
        self._unsaved.append((token_id, forget_at, seq))

    def log(self, entries: list[dict[str, Any]]) -> tuple[int, OSError | None]:
        """Number ``entries`` and append them (see :meth:`ChangeLog.append`): how many were
        logged, and the error that stopped the rest."""
        return self.changes.append(entries)

    def append(self, entry: Mapping[str, Any]) -> None:
        """Log one change (see :meth:`log`).

        Raises:
            OSError: it could not be logged.
        """
        _, error = self.log([dict(entry)])
        if error is not None:
            raise error

    def apply(self, state: RouterState, entry: Mapping[str, Any]) -> Any:
        """Apply a logged change to ``state`` (the ids it marks are tied to its ``seq``)."""
        self._applying = int(entry["seq"])
        try:
            return state.apply_logged(entry)
        finally:
            self._applying = None

    # --- snapshots ---------------------------------------------------------------------------

    def snapshot(self, state: RouterState, now: float) -> None:
        """Write the token ids used since the last snapshot to their segments (deleting the
        expired ones), the full state atomically (the last snapshot becomes the previous one),
        then start a new log segment and delete the segments no snapshot kept needs.

        Raises:
            OSError: nothing was lost: the log still holds every change; retry later.
        """
        durable = self.fsync_policy != "never"
        seq = self.seq
        if self._unsaved:
            self.segments.write(self._unsaved, fsync=self._fsync if durable else None)
            self._unsaved = []
        self.segments.prune(now)
        saved = {
            "snapshot_version": SNAPSHOT_VERSION,
            "config_hash": state.hash,
            "saved_at": now,
            "seq": seq,
            "state": state.to_dict(),
        }
        tmp = self.snapshot_path + ".tmp"
        try:
            with self._opener(tmp, "wb") as f:
                f.write(json.dumps(saved).encode())
                f.flush()
                if durable:
                    self._fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        if os.path.exists(self.snapshot_path):
            if self._cur_seq is not None:
                os.replace(self.snapshot_path, self.prev_snapshot_path)
                self._prev_seq, self._cur_seq = self._cur_seq, None
            else:  # unreadable when loaded: kept aside, never made the previous snapshot
                os.replace(self.snapshot_path, f"{self.snapshot_path}.{int(now)}.corrupt")
        os.replace(tmp, self.snapshot_path)
        self._cur_seq = seq
        if durable:
            self._sync_folder()
        self.changes.restart(seq, eagerly=True)
        # Kept: the log since the previous snapshot (all of it while there is none), so that a
        # damaged snapshot can be rebuilt from the one before.
        self.changes.prune(self._prev_seq or 0)

    def _sync_folder(self) -> None:
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            self._fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close the change log (a new store takes over, e.g. after a config change)."""
        self.changes.close()

    def __repr__(self) -> str:
        return f"StateStore({self.folder!r}, router={self.router!r}, seq={self.seq})"
