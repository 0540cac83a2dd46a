"""Unit tier fixtures: nothing here may start Ray."""

from __future__ import annotations

import fcntl
import os
import tempfile

import pytest
import ray
import ray._private.worker


def _no_ray(*args: object, **kwargs: object) -> None:
    raise RuntimeError("unit tests must not start Ray")


@pytest.fixture(autouse=True)
def _forbid_ray_init(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every unit test runs with ``ray.init`` raising, so nothing can start a cluster."""
    monkeypatch.setattr(ray, "init", _no_ray)
    monkeypatch.setattr(ray._private.worker, "init", _no_ray)


@pytest.fixture(scope="session")
def digits_artifacts() -> str:
    """The digits demo models (trained into artifacts/digits on first use, ~6 s)."""
    from graphs.examples.digits import ensure_trained

    # One trainer at a time: pytest-xdist workers share artifacts/digits, and a second worker
    # must not read files the first is still writing.
    with open(os.path.join(tempfile.gettempdir(), "servegraph-digits.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out_dir = ensure_trained()
    for name in ("logreg.onnx", "mlp.pt", "test.npz"):
        assert os.path.isfile(os.path.join(out_dir, name))
    return out_dir
