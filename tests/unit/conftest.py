"""Unit tier fixtures: nothing here may start Ray."""

from __future__ import annotations

import os

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

    out_dir = ensure_trained()
    for name in ("logreg.onnx", "mlp.pt", "test.npz"):
        assert os.path.isfile(os.path.join(out_dir, name))
    return out_dir
