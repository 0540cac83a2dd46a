"""What a node read while comfortable: the record a scale-down is decided from (:class:`Calm`).

Kept in the node's policy state under :data:`CALM_KEY` as a plain dict, from the reading that
made the node comfortable (or from its last change of replica count) to now.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CALM_KEY", "RECENT_S", "Calm"]

#: Key of the record in a node's policy state.
CALM_KEY = "calm"
#: Time constant (s) of the recent load a step down is sized from: the mean over the whole
#: comfortable period lags a load that fell, and one reading is noise.
RECENT_S = 2.0


@dataclass(frozen=True)
class Calm:
    """The readings since the node became comfortable.

    Attributes:
        load_sum: Sum of their load ratios (requests in flight per replica over target).
        count: How many.
        peak_load: The highest load ratio among them.
        first_rate: The arrival rate when the period began (after a scale-down: the rate
            then, which the next readings follow).
        rate_sum: Sum of their arrival rates.
        recent: Their load ratios' mean weighted by age (time constant :data:`RECENT_S`).
        at: When the last of them was read.
    """

    load_sum: float = 0.0
    count: int = 0
    peak_load: float = 0.0
    first_rate: float | None = None
    rate_sum: float = 0.0
    recent: float | None = None
    at: float | None = None

    @classmethod
    def of(cls, state: Mapping[str, Any]) -> Calm:
        """The record in a policy state (empty when there is none)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (state.get(CALM_KEY) or {}).items() if k in names})

    def mean_load(self, load: float) -> float:
        """Mean load ratio of the readings and ``load``."""
        return (self.load_sum + load) / (self.count + 1)

    def mean_rate(self, rate: float | None) -> float:
        """Mean arrival rate of the readings and ``rate``."""
        return (self.rate_sum + (rate or 0.0)) / (self.count + 1)

    def recent_load(self, load: float, now: float) -> float:
        """The load ratio weighted by age, ``load`` read at ``now`` the newest."""
        if self.recent is None or self.at is None:
            return load
        keep = math.exp(-max(now - self.at, 0.0) / RECENT_S)
        return keep * self.recent + (1.0 - keep) * load

    def add(self, load: float, rate: float | None, now: float) -> dict[str, Any]:
        """The record, as the state keeps it, once ``load`` and ``rate`` read at ``now``
        are added."""
        return dataclasses.asdict(
            Calm(
                load_sum=self.load_sum + load,
                count=self.count + 1,
                peak_load=max(self.peak_load, load),
                first_rate=self.first_rate or rate,
                rate_sum=self.rate_sum + (rate or 0.0),
                recent=self.recent_load(load, now),
                at=now,
            )
        )

    @staticmethod
    def after_change(rate: float | None) -> dict[str, Any]:
        """The record a scale-down starts: none read yet, the rate then to follow."""
        return dataclasses.asdict(Calm(first_rate=rate))
