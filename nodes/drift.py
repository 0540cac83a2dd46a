"""Drift statistics in numpy: PSI, Jensen-Shannon distance and 1-D Wasserstein distance.

Every feature is binned on fixed edges taken from its reference (equal width over the
reference's range, plus a bin below and one above), so the live side is a bounded ring of bin
indexes whatever the traffic. Pure functions and small classes, no Ray: the ingress's sampler
(:mod:`graphs.observe`) calls them off the hot path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "EPSILON",
    "Binning",
    "Window",
    "compare",
    "js_distance",
    "load_reference",
    "psi",
    "rows",
    "wasserstein",
]

#: Share given to an empty bin so that PSI stays finite (the usual 1e-4).
EPSILON = 1e-4


def _shares(counts: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """Counts (last axis: bins) as shares, empty bins raised to ``eps`` then renormalised."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    shares = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    if eps:
        shares = np.maximum(shares, eps)
        shares /= shares.sum(axis=-1, keepdims=True)
    return shares


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = EPSILON) -> np.ndarray:
    """Population stability index ``sum((a - e) * ln(a / e))`` of binned counts (last axis);
    empty bins count as ``eps`` so the index stays finite."""
    e, a = _shares(expected, eps), _shares(actual, eps)
    return np.asarray(((a - e) * np.log(a / e)).sum(axis=-1))


def js_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (square root of the divergence, base 2): in [0, 1]."""
    p, q = _shares(p), _shares(q)
    m = (p + q) / 2

    def kl(x: np.ndarray) -> np.ndarray:
        ratio = np.divide(x, m, out=np.ones_like(x), where=x > 0)
        return np.asarray((x * np.log2(ratio)).sum(axis=-1))

    divergence = np.clip((kl(p) + kl(q)) / 2, 0.0, 1.0)
    return np.asarray(np.sqrt(divergence))


def wasserstein(p: np.ndarray, q: np.ndarray, values: np.ndarray) -> np.ndarray:
    """1-D Wasserstein (earth mover's) distance between two distributions of mass over the
    same sorted ``values`` (last axis): the area between their cumulative distributions."""
    gap = np.abs(np.cumsum(_shares(p), axis=-1) - np.cumsum(_shares(q), axis=-1))
    return np.asarray((gap[..., :-1] * np.diff(values, axis=-1)).sum(axis=-1))


def rows(tensor: Any) -> np.ndarray:
    """A tensor as a float matrix: one row per item of its first axis, one column per feature."""
    array = np.asarray(tensor, dtype=np.float64)
    if array.ndim == 0:
        return array.reshape(1, 1)
    return array.reshape(array.shape[0], -1)


class Binning:
    """Fixed bins per feature from a reference matrix (rows x features).

    Bin 0 holds values below the reference's minimum, bins 1..``bins`` split its range in equal
    widths, bin ``bins + 1`` holds values above its maximum.
    """

    def __init__(self, reference: np.ndarray, bins: int = 10):
        ref = rows(reference)
        lo, hi = ref.min(axis=0), ref.max(axis=0)
        flat = hi <= lo
        lo, hi = np.where(flat, lo - 0.5, lo), np.where(flat, hi + 0.5, hi)
        self.bins = bins
        self.edges = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, bins + 1)[None, :]
        centers = (self.edges[:, :-1] + self.edges[:, 1:]) / 2
        # Where the mass of each bin sits for the Wasserstein distance: the outer bins at the
        # reference's minimum and maximum.
        self.values = np.concatenate([lo[:, None], centers, hi[:, None]], axis=1)
        self.reference = self.counts(self.index(ref))

    @property
    def features(self) -> int:
        """Number of features (columns)."""
        return int(self.edges.shape[0])

    def index(self, matrix: np.ndarray) -> np.ndarray:
        """The bin of every value of ``matrix`` (rows x features), as small integers."""
        x = rows(matrix)
        if x.shape[1] != self.features:
            raise ValueError(f"expected {self.features} features per row, got {x.shape[1]}")
        idx = (x[:, :, None] >= self.edges[None, :, :-1]).sum(axis=-1)
        idx = np.where(x > self.edges[None, :, -1], self.bins + 1, idx)
        return np.asarray(idx, dtype=np.int16)

    def counts(self, index: np.ndarray) -> np.ndarray:
        """Bin counts per feature (features x bins + 2) of bin indexes (rows x features)."""
        width = self.bins + 2
        flat = (np.asarray(index, dtype=np.int64) + np.arange(self.features) * width).ravel()
        return np.bincount(flat, minlength=self.features * width).reshape(self.features, width)


class Window:
    """The bin indexes of the last ``size`` rows seen: a fixed-size ring."""

    def __init__(self, binning: Binning, size: int):
        self.binning = binning
        self._ring = np.zeros((size, binning.features), dtype=np.int16)
        self._next = 0
        self.filled = 0

    def add(self, matrix: np.ndarray) -> None:
        """Bin ``matrix`` (rows x features) into the ring, the oldest rows making room."""
        for row in self.binning.index(matrix)[-len(self._ring) :]:
            self._ring[self._next] = row
            self._next = (self._next + 1) % len(self._ring)
            self.filled = min(self.filled + 1, len(self._ring))

    def counts(self) -> np.ndarray:
        """Bin counts per feature over the rows in the ring."""
        return self.binning.counts(self._ring[: self.filled])


def compare(
    binning: Binning,
    current: np.ndarray,
    thresholds: Mapping[str, float | None],
    names: Sequence[str] | None = None,
    top: int | None = None,
) -> dict[str, Any]:
    """Per-feature PSI, JS and Wasserstein of ``current`` counts against the reference's, and a
    summary: the max and mean of each, the features beyond any threshold, and those listed
    (all, or the ``top`` most drifted by PSI)."""
    stats = {
        "psi": psi(binning.reference, current),
        "js": js_distance(binning.reference, current),
        "wasserstein": wasserstein(binning.reference, current, binning.values),
    }
    names = list(names) if names is not None else [str(i) for i in range(binning.features)]
    drifted = np.zeros(binning.features, dtype=bool)
    for key, limit in thresholds.items():
        if limit is not None:
            drifted |= stats[key] > limit
    order = np.argsort(-stats["psi"], kind="stable")
    listed = order if top is None else order[:top]
    return {
        "summary": {
            **{f"{k}_max": round(float(v.max()), 6) for k, v in stats.items()},
            **{f"{k}_mean": round(float(v.mean()), 6) for k, v in stats.items()},
            "drifted": int(drifted.sum()),
            "features": binning.features,
        },
        "drifted_features": [names[i] for i in np.flatnonzero(drifted)],
        "features": {
            names[i]: {k: round(float(v[i]), 6) for k, v in stats.items()} for i in listed
        },
    }


def load_reference(path: str, inputs: Sequence[str]) -> dict[str, np.ndarray]:
    """A reference sample by tensor name from a .npz, .npy or .jsonl file.

    A .npz holds arrays named after tensors ('x' stands for a one-input graph's input); a .npy
    is the one input; a .jsonl has one object of tensors per line (each a row, or rows).

    Raises:
        ValueError: the file is unreadable, of another kind, or holds none of the ``inputs``.
    """
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                data = {name: np.asarray(npz[name]) for name in npz.files}
        elif ext == ".npy":
            data = {inputs[0] if len(inputs) == 1 else "x": np.load(path, allow_pickle=False)}
        elif ext == ".jsonl":
            data = _read_jsonl(path)
        else:
            raise ValueError("must be a .npz, .npy or .jsonl file")
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read reference {path!r}: {exc}") from None
    if len(inputs) == 1 and inputs[0] not in data and "x" in data:
        data[inputs[0]] = data.pop("x")
    missing = [name for name in inputs if name not in data]
    if missing:
        found = ", ".join(sorted(data)) or "nothing"
        raise ValueError(f"reference {path!r} lacks input {missing[0]!r} (it holds {found})")
    return {name: rows(array) for name, array in data.items()}


def _read_jsonl(path: str) -> dict[str, np.ndarray]:
    columns: dict[str, list[np.ndarray]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("every line must be a JSON object of tensors")
                for name, value in record.items():
                    array = np.asarray(value, dtype=np.float64)
                    columns.setdefault(name, []).append(array if array.ndim > 1 else array[None])
    return {name: np.concatenate([rows(a) for a in parts]) for name, parts in columns.items()}
