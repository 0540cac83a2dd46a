"""A router's change log: numbered JSON lines in segments that join without double-applying.

Every change is one JSON line with a sequence number ``seq`` (1, 2, ... for the router's life).
The log is cut into segments ``<dir>/<start>-<n>.jsonl``, each holding the changes from
``start`` on. A new segment starts after each snapshot and after each load; a segment that
starts at ``s`` supersedes what earlier segments hold from ``s`` on (its writer's state was at
``s - 1``), so a segment abandoned after a failed write, or one damaged in the middle, never
shadows what was written after it. A log older versions wrote (one file, no numbers) reads as a
segment starting at 1.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterator
from typing import IO, Any, Literal

__all__ = ["FSYNC_POLICIES", "ChangeLog", "FsyncPolicy", "Opener"]

log = logging.getLogger(__name__)

#: When the change log is forced to disk (see :class:`routing.spec.RouterStateSpec`).
FSYNC_POLICIES = ("batch", "always", "never")
FsyncPolicy = Literal["batch", "always", "never"]
#: Opens a file for binary writing: ``(path, mode) -> file`` (``mode`` is ``"ab"`` or ``"wb"``).
Opener = Callable[[str, str], IO[bytes]]
_SEGMENT = re.compile(r"^(\d{12})-(\d+)\.jsonl$")


def open_unbuffered(path: str, mode: str) -> IO[bytes]:
    """The default :data:`Opener`: every write goes straight to the OS."""
    return open(path, mode, buffering=0)


class ChangeLog:
    """Appends numbered changes to the current segment; reads every segment back in order.

    Args:
        folder: the segments' folder (created when first written).
        legacy_path: the single log file older versions wrote.
        fsync_policy: ``batch`` (:meth:`append` forces its entries to disk once), ``always``
            (after each entry) or ``never``.
        opener: opens segments for appending (tests inject failures).
        fsync: forces a file descriptor to disk (tests count the calls).
    """

    def __init__(
        self,
        folder: str,
        legacy_path: str,
        *,
        fsync_policy: FsyncPolicy = "batch",
        opener: Opener = open_unbuffered,
        fsync: Callable[[int], None] = os.fsync,
    ):
        if fsync_policy not in FSYNC_POLICIES:
            raise ValueError(f"fsync_policy must be one of {FSYNC_POLICIES}, got {fsync_policy!r}")
        self.folder = folder
        self.legacy_path = legacy_path
        self.fsync_policy = fsync_policy
        self._opener = opener
        self._fsync = fsync
        #: Sequence number of the last change appended.
        self.seq = 0
        self._file: IO[bytes] | None = None
        self._size = 0
        #: The segment being written, or the one the next append starts.
        self.path = self.segment_path(1)

    # --- reading -------------------------------------------------------------------------------

    def segments(self) -> list[tuple[int, int, str]]:
        """``(start, n, path)`` of every segment, in order (the legacy log first)."""
        found = []
        if os.path.exists(self.legacy_path):
            found.append((1, -1, self.legacy_path))
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.folder):
                match = _SEGMENT.match(name)
                if match:
                    start, n = int(match.group(1)), int(match.group(2))
                    found.append((start, n, os.path.join(self.folder, name)))
        return sorted(found)

    def entries(self) -> Iterator[tuple[str, int, int, dict[str, Any] | None]]:
        """``(path, line number, seq, entry)`` of every line no later segment supersedes, in
        order; ``entry`` is None for an unreadable line (its ``seq`` is the one it would have)."""
        segments = self.segments()
        for i, (start, _, path) in enumerate(segments):
            limit = segments[i + 1][0] if i + 1 < len(segments) else math.inf
            seq = start - 1  # lines without "seq" (older versions) count on from start
            for number, entry in _read(path):
                given = entry.get("seq") if entry is not None else None
                seq = seq + 1 if given is None else int(given)
                if seq < limit:
                    yield path, number, seq, entry

    # --- writing -------------------------------------------------------------------------------

    def segment_path(self, start: int) -> str:
        """A new segment's path for changes from ``start`` on."""
        taken = [n for s, n, _ in self.segments() if s == start]
        return os.path.join(self.folder, f"{start:012d}-{max(taken, default=-1) + 1}.jsonl")

    def restart(self, seq: int, *, eagerly: bool = False) -> None:
        """Continue after change ``seq`` in a new segment (created now with ``eagerly``, best
        effort; else at the next append)."""
        self.close()
        self.seq = seq
        self.path = self.segment_path(seq + 1)
        if eagerly:
            with contextlib.suppress(OSError):  # the next append tries again
                os.makedirs(self.folder, exist_ok=True)
                self._file, self._size = self._opener(self.path, "ab"), 0

    def append(self, entries: list[dict[str, Any]]) -> tuple[int, OSError | None]:
        """Number ``entries`` (each gets ``seq``) and append them, forced to disk per policy.

        Returns how many were appended and the error that stopped the rest (None: all were).
        An entry whose write failed leaves nothing behind: the segment is cut back to before
        it, or abandoned (the next entry starts a new segment that supersedes it). On a failed
        fsync every entry was appended, but may not be on disk.
        """
        done = 0
        try:
            for entry in entries:
                entry["seq"] = self.seq + 1
                self._write((json.dumps(entry, separators=(",", ":")) + "\n").encode())
                self.seq += 1
                done += 1
                if self.fsync_policy == "always":
                    self._sync()
            if self.fsync_policy == "batch" and done:
                self._sync()
        except OSError as exc:
            return done, exc
        return done, None

    def _write(self, data: bytes) -> None:
        if self._file is None:
            os.makedirs(self.folder, exist_ok=True)
            path = self.segment_path(self.seq + 1)
            self._file, self._size, self.path = self._opener(path, "ab"), 0, path
        view = memoryview(data)
        try:
            while view:
                written = self._file.write(view)
                if not written:
                    raise OSError(28, "no bytes written")  # like ENOSPC: nothing went out
                view = view[written:]
        except OSError:
            try:
                self._file.truncate(self._size)
            except Exception:
                self.close()  # it may end in a partial line: the next append starts anew
            raise
        self._size += len(data)

    def _sync(self) -> None:
        if self._file is not None:
            self._file.flush()
            self._fsync(self._file.fileno())

    def prune(self, kept_seq: int) -> None:
        """Delete the segments holding only changes up to ``kept_seq`` (a snapshot has them)."""
        for (_, _, path), (next_start, _, _) in itertools.pairwise(self.segments()):
            if next_start <= kept_seq + 1 and path != self.path:
                with contextlib.suppress(OSError):
                    os.remove(path)

    def close(self) -> None:
        """Stop writing the current segment."""
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None


def _read(path: str) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """``(line number, entry)`` per non-empty line; entry None for an unreadable line."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        log.error("log segment %s unreadable (%r)", path, exc)
        return
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            entry = None
        yield number, entry if isinstance(entry, dict) and "op" in entry else None
