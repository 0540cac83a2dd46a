"""Ensemble combiners: pure functions from member outputs (and weights) to one output dict."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nodes.calls import Payload
from nodes.spec import BUILTIN_COMBINERS

Combiner = Callable[[Sequence[Payload], Sequence[float]], Payload]


def _common_keys(outputs: Sequence[Payload]) -> list[str]:
    keys = [k for k in outputs[0] if all(k in o for o in outputs[1:])]
    if not keys:
        raise ValueError("the members' outputs share no key to combine")
    return keys


def weighted_mean(outputs: Sequence[Payload], weights: Sequence[float]) -> Payload:
    """Element-wise weighted mean of every output the members share."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    result = {}
    for key in _common_keys(outputs):
        stacked = np.stack([np.asarray(o[key], dtype=np.float64) for o in outputs])
        mean = np.tensordot(w, stacked, axes=1)
        first = np.asarray(outputs[0][key])
        result[key] = mean.astype(first.dtype if first.dtype.kind == "f" else np.float64)
    return result


def mean(outputs: Sequence[Payload], weights: Sequence[float]) -> Payload:
    """Element-wise mean of every output the members share (weights ignored)."""
    return weighted_mean(outputs, [1.0] * len(outputs))


def vote(outputs: Sequence[Payload], weights: Sequence[float]) -> Payload:
    """Element-wise (weighted) majority vote of every output the members share.

    Ties go to the value of the earliest member among the tied ones.
    """
    result = {}
    for key in _common_keys(outputs):
        stacked = np.stack([np.asarray(o[key]) for o in outputs])
        flat = stacked.reshape(len(outputs), -1)
        winners = np.empty(flat.shape[1], dtype=flat.dtype)
        for j in range(flat.shape[1]):
            tally: dict[Any, float] = {}
            for i, value in enumerate(flat[:, j]):
                tally[value.item()] = tally.get(value.item(), 0.0) + weights[i]
            best = max(tally.values())
            winners[j] = next(
                v for v in flat[:, j] if math.isclose(tally[v.item()], best, rel_tol=1e-9)
            )
        result[key] = winners.reshape(stacked.shape[1:])
    return result


#: The combiners named in :data:`graphs.spec.BUILTIN_COMBINERS`, in that order.
BUILTIN: dict[str, Combiner] = dict(zip(BUILTIN_COMBINERS, (mean, weighted_mean, vote)))
