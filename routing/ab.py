"""Sticky A/B split over N weighted arms: the same key always lands on the same arm.

Requests that carry a key (a header such as ``X-User-Id`` or a payload field, see
:class:`~routing.config.StickyKey`) are assigned by weighted rendezvous hashing (highest random
weight): each arm scores ``w / -ln(h)`` with ``h`` a hash of (salt, arm, key) mapped into (0, 1),
and the best score wins. Each arm wins a share of keys equal to its weight, and a weight change
moves only the keys it must: raising one arm's weight moves keys to that arm and nowhere else, so
70/30 -> 60/40 moves 10 % of the keys. Requests without a key are assigned at random by weight.

Weights change at runtime with :meth:`StickyAB.set_weights`; nothing else needs to restart.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from routing.config import StickyKey
from routing.weighted import WeightedRandom

__all__ = ["StickyAB", "extract_key"]

_TWO_53 = float(2**53)


def extract_key(
    key: StickyKey | None,
    headers: Mapping[str, str] | None = None,
    payload: Mapping[str, Any] | None = None,
) -> str | None:
    """The request's sticky key, or None when it has none.

    Args:
        key: where to look; None means requests are never keyed.
        headers: request headers (any mapping; looked up case-insensitively).
        payload: request payload (JSON object).

    Returns:
        The key as a string. Only non-empty strings and integers count as keys; a missing,
        empty or other-typed value gives None (the request is then assigned at random).
    """
    if key is None:
        return None
    value: Any = None
    if key.header is not None:
        if headers:
            value = headers.get(key.header)
            if value is None:
                wanted = key.header.lower()
                value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    elif payload is not None and key.field is not None:
        value = payload
        for part in key.field.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


class StickyAB:
    """Weighted split where keyed requests stick to an arm (consistent hashing).

    Args:
        weights: non-negative arm weights with a positive sum (normalised here).
        rng: random source for keyless requests; inject a seeded ``random.Random`` in tests.
        arm_ids: stable names of the arms, hashed with the key (default ``"0"``, ``"1"``...).
            Naming arms keeps every other arm's keys in place when one is added or removed.
        salt: mixed into every hash (see :class:`~routing.config.ABConfig`).
    """

    def __init__(
        self,
        weights: Sequence[float],
        rng: random.Random | None = None,
        *,
        arm_ids: Sequence[str] | None = None,
        salt: str = "",
    ):
        self._rng = rng or random.Random()
        self._random = WeightedRandom(weights, self._rng)
        ids = [str(i) for i in range(len(weights))] if arm_ids is None else list(arm_ids)
        if len(ids) != len(weights) or len(set(ids)) != len(ids):
            raise ValueError(f"arm_ids must be {len(weights)} distinct names, got {ids}")
        self.arm_ids = ids
        self.salt = salt
        # One hasher per arm with (salt, arm) already fed in; each lookup copies it.
        self._prefixes = [
            hashlib.blake2b(f"{salt}\x1f{arm}\x1f".encode(), digest_size=8) for arm in ids
        ]

    @property
    def weights(self) -> list[float]:
        """The normalised arm weights."""
        return self._random.weights

    def set_weights(self, weights: Sequence[float]) -> None:
        """Change the split at runtime; keyed requests move only as far as the change needs.

        Raises:
            ValueError: wrong number of weights, or not >= 0 with a positive sum.
        """
        if len(weights) != len(self.arm_ids):
            raise ValueError(f"expected {len(self.arm_ids)} weights, got {list(weights)}")
        # Built first and swapped in one assignment, so a concurrent choose() sees old or new.
        self._random = WeightedRandom(weights, self._rng)

    def choose(self, key: str | None = None) -> int:
        """Index of the arm for a request: by hash when it has a key, else at random."""
        if key is None:
            return self._random.choose()
        return self.arm_for_key(key)

    def arm_for_key(self, key: str) -> int:
        """The arm a key is assigned to under the current weights."""
        data = key.encode()
        best, best_score = 0, -1.0
        for i, (prefix, weight) in enumerate(zip(self._prefixes, self._random.weights)):
            if weight <= 0:
                continue
            h = prefix.copy()
            h.update(data)
            # The top 53 bits, exactly representable, into the open interval (0, 1).
            u = ((int.from_bytes(h.digest(), "big") >> 11) + 0.5) / _TWO_53
            score = weight / -math.log(u)
            if score > best_score:
                best, best_score = i, score
        return best

    def __repr__(self) -> str:
        return f"StickyAB(weights={self.weights}, arm_ids={self.arm_ids}, salt={self.salt!r})"
