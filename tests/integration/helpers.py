"""Callables the integration tests deploy; pickled by value so replicas need not import tests/."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import ray.cloudpickle
import torch


class Echo:
    """Returns its input, with the batch size it was called with."""

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        x = np.asarray(payload["x"])
        return {"x": x, "seen_rows": np.full(len(x), len(x))}


class Sleepy:
    """Sleeps ``seconds`` per call (a slow model), then returns its input scaled by ``factor``."""

    def __init__(self, seconds: float = 0.05, factor: float = 1.0):
        self.seconds = seconds
        self.factor = factor

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        time.sleep(self.seconds)
        return {"x": np.asarray(payload["x"]) * self.factor}


class Broken:
    """Always fails."""

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("model exploded")


class TinyNet(torch.nn.Module):
    """A small torch module built from an import path (with a state dict) by the torch runtime."""

    def __init__(self, hidden: int = 8):
        super().__init__()
        self.fc = torch.nn.Linear(4, hidden)
        self.out = torch.nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc(x)))


def double(payload: dict[str, Any]) -> dict[str, Any]:
    return {"x": np.asarray(payload["x"]) * 2}


async def add_one(payload: dict[str, Any]) -> dict[str, Any]:
    return {"x": np.asarray(payload["x"]) + 1}


ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Flaky:
    """Fails a ``fail_rate`` share of calls (seeded), else answers ``{"x": x, "arm": name}``;
    each call takes at least ``latency_s``."""

    def __init__(
        self, name: str = "arm", fail_rate: float = 0.0, seed: int = 0, latency_s: float = 0.0
    ):
        import random

        self.name = name
        self.fail_rate = fail_rate
        self.rng = random.Random(seed)
        self.latency_s = latency_s

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self.latency_s:
            time.sleep(self.latency_s)
        if self.rng.random() < self.fail_rate:
            raise RuntimeError(f"{self.name} failed")
        return {"x": np.asarray(payload["x"]), "arm": np.asarray([self.name])}


class Hang:
    """A shadow far slower than its router's timeout (5 s per call)."""

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        time.sleep(5)
        return payload


class Keyed:
    """A preprocess class configured with a credential (which /graph must never show)."""

    def __init__(self, api_token: str, scale: float = 1.0):
        self.api_token = api_token
        self.scale = scale

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"x": np.asarray(payload["x"]) * self.scale}


def with_feature(payload: dict[str, Any]) -> dict[str, Any]:
    """Adds ``f``: the first input value as a plain number, for a contextual (LinUCB) router."""
    x = np.asarray(payload["x"])
    return {"x": x, "f": float(x.ravel()[0])}
