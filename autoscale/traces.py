"""Synthetic load for the simulator: arrival rate over time (:class:`LoadTrace`), the standard
traces of the comparison, and Poisson arrivals that follow a trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["LoadTrace", "sample_arrivals", "standard_traces"]


@dataclass(frozen=True)
class LoadTrace:
    """Arrival rate (requests/s) as a function of time.

    Attributes:
        kind: ``step``, ``spike``, ``ramp`` or ``diurnal``.
        base_rps: Rate before the change (diurnal: the trough).
        peak_rps: Rate after the step, during the spike, at the ramp's end (diurnal: the crest).
        start_s: When the load changes (step, spike, ramp start; diurnal: the first trough).
        duration_s: Spike length, ramp length, or diurnal period.
    """

    kind: Literal["step", "spike", "ramp", "diurnal"]
    base_rps: float = 20.0
    peak_rps: float = 100.0
    start_s: float = 60.0
    duration_s: float = 30.0

    def rate(self, t: np.ndarray | float) -> np.ndarray:
        """Arrival rate at time(s) ``t``."""
        t = np.asarray(t, dtype=float)
        lo, hi, t0, d = self.base_rps, self.peak_rps, self.start_s, self.duration_s
        if self.kind == "step":
            return np.where(t >= t0, hi, lo)
        if self.kind == "spike":
            return np.where((t >= t0) & (t < t0 + d), hi, lo)
        if self.kind == "ramp":
            return lo + (hi - lo) * np.clip((t - t0) / d, 0.0, 1.0)
        phase = 2 * math.pi * np.maximum(t - t0, 0.0) / d
        return lo + (hi - lo) * (1 - np.cos(phase)) / 2


def standard_traces(duration_s: float = 600.0) -> dict[str, LoadTrace]:
    """The four traces of the comparison: 20 -> 100 req/s step, spike, ramp and diurnal."""
    return {
        "step": LoadTrace("step", start_s=60.0),
        "spike": LoadTrace("spike", start_s=120.0, duration_s=30.0),
        "ramp": LoadTrace("ramp", start_s=60.0, duration_s=240.0),
        "diurnal": LoadTrace("diurnal", start_s=0.0, duration_s=duration_s / 2),
    }


def sample_arrivals(trace: LoadTrace, duration: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival times in ``[0, duration)`` of a Poisson process following ``trace`` (thinning)."""
    grid = np.linspace(0.0, duration, 2049)
    peak = float(np.max(trace.rate(grid))) * 1.001 + 1e-9
    times = np.sort(rng.uniform(0.0, duration, rng.poisson(peak * duration)))
    keep = rng.uniform(0.0, peak, times.size) < trace.rate(times)
    return times[keep]
