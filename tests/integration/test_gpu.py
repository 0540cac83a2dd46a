"""Fractional GPUs on logical GPUs: the session cluster has ``num_gpus=1`` and no real GPU, so
this checks scheduling and the runtimes' CPU fallback; the ``gpu`` marker covers real CUDA."""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx
import numpy as np
from ray import serve
from ray.util.state import list_actors

from graphs import Graph, tensor
from graphs.examples.digits import ensure_trained
from tests.support import wait_for


def test_quarter_gpu_replicas_pack_onto_one_gpu(
    deploy: Callable[..., str], http: httpx.Client
) -> None:
    artifacts = ensure_trained()
    g = Graph("gpus", inputs=[tensor("input", "FP32", [-1, 64])])
    g.entry = g.model(
        "logreg_gpu",
        runtime="onnx",
        model_path=os.path.join(artifacts, "logreg.onnx"),
        output_names=["label", "probabilities"],
        num_gpus=0.25,
        num_cpus=0,
        num_replicas=5,
    )
    url = deploy(g.build(), "gpus", wait=False)

    def states() -> dict[str, int]:
        app = serve.status().applications.get("gpus")
        node = app.deployments.get("logreg_gpu") if app else None
        return dict(node.replica_states) if node else {}

    wait_for(lambda: states().get("RUNNING") == 4, 180, "4 running replicas")
    # The fifth replica cannot get a quarter GPU: it stays pending and says so.
    assert sum(states().values()) == 5 and states().get("RUNNING") == 4
    assert serve.status().applications["gpus"].status == "DEPLOYING"
    actors = [
        a
        for a in list_actors(
            filters=[("class_name", "=", "ServeReplica:gpus:logreg_gpu")], detail=True
        )
        if a.state != "DEAD"
    ]
    assert sorted(a.state for a in actors) == ["ALIVE"] * 4 + ["PENDING_CREATION"]
    assert all(a.required_resources.get("GPU") == 0.25 for a in actors)

    # The running replicas serve (onnxruntime without CUDA falls back to its CPU provider).
    x = np.load(os.path.join(artifacts, "test.npz"))["x"][:5] / 16.0
    r = wait_for(
        lambda: (
            (resp := http.post(f"{url}/predict", json={"inputs": x.tolist()})).status_code == 200
            and resp
        ),
        60,
        "a prediction",
    )
    assert len(r.json()["outputs"]["label"]) == 5
