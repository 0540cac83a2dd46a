"""Which replica deltas a router's state has applied, so that a resent delta counts once.

Every delta a router replica sends carries its replica id (random per replica) and a sequence
number that grows by one per delta. A replica resends what it could not get acknowledged (a lost
reply, a state holder that refused half a batch); :class:`ReplicaLedger` remembers the highest
sequence number applied per replica and says which deltas were applied already.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["FORGET_AFTER_S", "MAX_REPLICAS", "ReplicaLedger"]

#: A replica not heard from for this long is forgotten (replicas come and go with autoscaling).
FORGET_AFTER_S = 3600.0
#: Most replicas remembered at once; the longest silent ones are forgotten first.
MAX_REPLICAS = 1024


class ReplicaLedger:
    """Per replica id: the highest delta sequence number applied and when it was applied.

    Bounded: a replica silent for ``forget_after_s`` is forgotten, and at most ``max_replicas``
    are kept (the longest silent go first). A forgotten replica's next delta is applied as new:
    a replica resends only what it holds (``routing.router.MAX_UNSENT`` batches), so this only
    matters for one silent for over an hour that still holds a delta applied before.

    Pure: times are passed in, so replaying the same calls gives the same ledger.

    Args:
        max_replicas: most replicas remembered.
        forget_after_s: how long a silent replica is remembered.
    """

    def __init__(self, max_replicas: int = MAX_REPLICAS, forget_after_s: float = FORGET_AFTER_S):
        self.max_replicas = max_replicas
        self.forget_after_s = forget_after_s
        #: replica id -> [highest seq applied, time of that delta]
        self.replicas: dict[str, list[float]] = {}
        #: Deltas skipped because they had been applied before.
        self.duplicates = 0

    def applied(self, replica: str, seq: int) -> bool:
        """Whether the delta ``seq`` of ``replica`` was applied already."""
        known = self.replicas.get(replica)
        return known is not None and seq <= known[0]

    def record(self, replica: str, seq: int, now: float) -> None:
        """Note the delta ``seq`` of ``replica`` as applied at ``now``."""
        self.replicas[replica] = [seq, now]
        stale = [r for r, (_, at) in self.replicas.items() if now - at > self.forget_after_s]
        for r in stale:
            del self.replicas[r]
        if len(self.replicas) > self.max_replicas:
            by_age = sorted(self.replicas, key=lambda r: self.replicas[r][1])
            for r in by_age[: len(self.replicas) - self.max_replicas]:
                del self.replicas[r]

    def to_dict(self) -> dict[str, Any]:
        """JSON for the router's snapshot."""
        return {"replicas": {r: list(v) for r, v in self.replicas.items()}, "dups": self.duplicates}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ReplicaLedger:
        """Rebuild from :meth:`to_dict` (None: an empty ledger, as for older snapshots)."""
        ledger = cls()
        if data:
            ledger.replicas = {str(r): [int(s), float(t)] for r, (s, t) in data["replicas"].items()}
            ledger.duplicates = int(data.get("dups", 0))
        return ledger

    def __len__(self) -> int:
        return len(self.replicas)

    def __repr__(self) -> str:
        return f"ReplicaLedger(replicas={len(self)}, duplicates={self.duplicates})"
