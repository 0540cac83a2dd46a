"""Single use of feedback tokens: :class:`ReplayGuard` remembers used token ids until they expire;
:class:`ReplaySegments` keeps them on disk next to the router's snapshot.

The ids are not part of the router's snapshot: rewriting a million ids every few seconds would
cost more than everything else the snapshot holds. They go to append-only segment files, one per
hour of expiry (``<dir>/<app>/<router>.replay/<hour>.jsonl``); a segment whose hour has passed
holds only expired ids and is deleted whole.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator

from routing.tokens import FeedbackClaims, ReplayedTokenError, ReplayGuardFullError

__all__ = ["BUCKET_S", "ReplayGuard", "ReplaySegments"]

log = logging.getLogger(__name__)

#: Width of a segment, in seconds of expiry time.
BUCKET_S = 3600
_SEGMENT = re.compile(r"^(\d+)\.jsonl$")


class ReplayGuard:
    """Remembers used token ids until they expire, so each token is accepted once.

    Bounded in time and size. Ids are forgotten ``grace_s`` after their token expires (a replay
    after that is rejected as expired by :meth:`routing.tokens.FeedbackTokens.verify`), so it
    holds at most (rewards per second) x (token ttl) ids; and it never holds more than
    ``max_entries``: a full guard rejects new tokens (:class:`ReplayGuardFullError`, 503) rather
    than forget one that could still be replayed. Size ``max_entries`` as rate x ttl: the default
    1,000,000 covers 11.5 rewards/s sustained with the default 24 h ttl (1,000,000 / 86,400 s),
    or 277 rewards/s with a 1 h ttl; each id costs about 200 bytes, 200 MB at the default.

    Thread-safe. Pure: :class:`ReplaySegments` persists what ``on_mark`` reports.

    Args:
        max_entries: most token ids remembered at once (size for rate x ttl).
        grace_s: how long after expiry an id is kept; covers clock skew between the process
            that verified the token and this one.
        on_mark: called with ``(token_id, forget_at)`` for every id accepted, to persist it.
    """

    def __init__(
        self,
        max_entries: int = 1_000_000,
        grace_s: float = 60.0,
        on_mark: Callable[[str, float], None] | None = None,
    ):
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        if grace_s < 0:
            raise ValueError(f"grace_s must be >= 0, got {grace_s}")
        self.max_entries = max_entries
        self.grace_s = grace_s
        self.on_mark = on_mark
        self._seen: dict[str, float] = {}
        self._expiries: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def check_and_mark(self, claims: FeedbackClaims, now: float) -> None:
        """Accept the token once: raise if its id was seen, else remember it.

        Raises:
            ReplayedTokenError: the token was accepted before (409).
            ReplayGuardFullError: ``max_entries`` unexpired ids are held (503).
        """
        with self._lock:
            self._purge(now)
            if claims.token_id in self._seen:
                raise ReplayedTokenError(f"feedback token {claims.token_id!r} was already used")
            if len(self._seen) >= self.max_entries:
                raise ReplayGuardFullError(
                    f"replay guard holds {self.max_entries} unexpired tokens; raise max_entries "
                    "or shorten the token ttl"
                )
            forget_at = claims.expires_at + self.grace_s
            self._add(claims.token_id, forget_at)
        if self.on_mark is not None:
            self.on_mark(claims.token_id, forget_at)

    def remember(self, entries: Iterable[tuple[str, float]], now: float) -> int:
        """Load ``(token_id, forget_at)`` pairs (persisted earlier); ids already held and expired
        ones are skipped, and ``max_entries`` is not enforced: a used token stays used even when
        the guard is over its size. Returns how many were added."""
        added = 0
        with self._lock:
            for token_id, forget_at in entries:
                if forget_at > now and token_id not in self._seen:
                    self._add(token_id, forget_at)
                    added += 1
        return added

    def _add(self, token_id: str, forget_at: float) -> None:
        self._seen[token_id] = forget_at
        heapq.heappush(self._expiries, (forget_at, token_id))

    def __contains__(self, token_id: object) -> bool:
        return token_id in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def _purge(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            _, token_id = heapq.heappop(self._expiries)
            self._seen.pop(token_id, None)

    def __repr__(self) -> str:
        return f"ReplayGuard(entries={len(self)}, max_entries={self.max_entries})"


class ReplaySegments:
    """Used token ids on disk: append-only JSONL segments, one per hour of expiry.

    A line is ``["<token id>", <forget_at>, <seq>]``: ``seq`` is the change log's sequence
    number of the reward that used the token (0 in lines older versions wrote), so a load can
    tell the ids used before a snapshot from those its log replay marks again. :meth:`write`
    appends (to the segment of each id's hour, flushed to the OS like the change log),
    :meth:`load` and :meth:`entries` read the unexpired segments (tolerating a torn last line),
    :meth:`prune` deletes segments whose hour has passed.

    Args:
        folder: the segments' folder (``<dir>/<app>/<router>.replay``); created if missing.
    """

    def __init__(self, folder: str):
        self.folder = folder
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:  # a read-only volume: reading still works, writing fails later
            log.error("cannot create %s (%r)", folder, exc)

    def _segments(self) -> Iterator[tuple[int, str]]:
        if not os.path.isdir(self.folder):
            return
        for name in sorted(os.listdir(self.folder)):
            match = _SEGMENT.match(name)
            if match:
                yield int(match.group(1)), os.path.join(self.folder, name)

    def write(
        self,
        entries: Iterable[tuple[str, float] | tuple[str, float, int]],
        fsync: Callable[[int], None] | None = None,
    ) -> int:
        """Append ``(token_id, forget_at)`` pairs or ``(token_id, forget_at, seq)`` triples;
        returns how many. With ``fsync``, each segment written is forced to disk with it."""
        by_bucket: dict[int, list[str]] = {}
        for token_id, forget_at, *seq in entries:
            line = json.dumps([token_id, forget_at, *seq], separators=(",", ":"))
            by_bucket.setdefault(int(forget_at // BUCKET_S), []).append(line + "\n")
        if by_bucket:
            os.makedirs(self.folder, exist_ok=True)
        for bucket, lines in by_bucket.items():
            with open(os.path.join(self.folder, f"{bucket}.jsonl"), "a") as f:
                f.writelines(lines)
                if fsync is not None:
                    f.flush()
                    fsync(f.fileno())
        return sum(len(lines) for lines in by_bucket.values())

    def load(self, now: float) -> Iterator[tuple[str, float]]:
        """Every persisted ``(token_id, forget_at)`` still unexpired at ``now``."""
        for token_id, forget_at, _ in self.entries(now):
            yield token_id, forget_at

    def entries(self, now: float) -> Iterator[tuple[str, float, int]]:
        """Every persisted ``(token_id, forget_at, seq)`` still unexpired at ``now``."""
        for bucket, path in self._segments():
            if (bucket + 1) * BUCKET_S <= now:
                continue
            with open(path) as f:
                for number, line in enumerate(f, 1):
                    try:
                        token_id, forget_at, *rest = json.loads(line)
                        forget_at = float(forget_at)
                        seq = int(rest[0]) if rest else 0
                    except (ValueError, TypeError, IndexError):
                        # A torn last line was never acknowledged; anything else is damage.
                        log.error("replay segment %s: unreadable line %d skipped", path, number)
                        continue
                    if isinstance(token_id, str) and forget_at > now:
                        yield token_id, forget_at, seq

    def prune(self, now: float) -> int:
        """Delete the segments whose every id expired by ``now``; returns how many."""
        removed = 0
        for bucket, path in self._segments():
            if (bucket + 1) * BUCKET_S <= now:
                os.remove(path)
                removed += 1
        return removed

    def __repr__(self) -> str:
        return f"ReplaySegments({self.folder!r})"
