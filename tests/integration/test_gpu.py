"""Fractional GPUs on logical GPUs: the session cluster has ``num_gpus=1`` and no real GPU, so
this checks scheduling and the runtimes' CPU fallback; the ``gpu`` marker covers real CUDA."""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx
import numpy as np
import pytest
import yaml
from ray import serve
from ray.util.state import list_actors

from graphs import Graph, tensor
from graphs.examples.digits import ensure_trained
from tests.support import BASE_URL, delete_app, serve_cli, wait_for


def test_quarter_gpu_replicas_pack_onto_one_gpu(serve_up: None, tmp_path: object) -> None:
    """A Serve config's deployments entry gives the node 5 replicas of a quarter GPU each."""
    artifacts = ensure_trained()
    graph = {
        "name": "gpus",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
        "entry": "logreg_gpu",
        "nodes": [
            {
                "name": "logreg_gpu",
                "kind": "model",
                "runtime": "onnx",
                "model_path": os.path.join(artifacts, "logreg.onnx"),
                "output_names": ["label", "probabilities"],
            }
        ],
    }
    config = {
        "applications": [
            {
                "name": "gpus",
                "route_prefix": "/gpus",
                "import_path": "graphs.builder:build_app",
                "args": {"graph": graph},
                "deployments": [
                    {
                        "name": "logreg_gpu",
                        "num_replicas": 5,
                        "ray_actor_options": {"num_cpus": 0, "num_gpus": 0.25},
                    }
                ],
            }
        ]
    }
    path = os.path.join(str(tmp_path), "gpus.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    serve_cli("deploy", path)
    try:
        _check_four_run_and_one_waits(artifacts)
    finally:
        delete_app("gpus")


def _check_four_run_and_one_waits(artifacts: str) -> None:
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

    def predict() -> httpx.Response | None:
        r = httpx.post(f"{BASE_URL}/gpus/predict", json={"inputs": x.tolist()}, timeout=30)
        return r if r.status_code == 200 else None

    assert len(wait_for(predict, 60, "a prediction").json()["outputs"]["label"]) == 5


@pytest.mark.gpu
def test_real_gpu_runs_onnx_on_cuda_and_torch_on_cuda(
    deploy: Callable[..., str], http: httpx.Client
) -> None:
    """On a CUDA machine (with the ``gpu`` extra): half-GPU replicas use CUDA for both runtimes."""
    artifacts = ensure_trained()
    g = Graph("realgpu", inputs=[tensor("input", "FP32", [-1, 64])])
    onnx = g.model(
        "onnx_gpu",
        runtime="onnx",
        model_path=os.path.join(artifacts, "logreg.onnx"),
        output_names=["label", "probabilities"],
        num_gpus=0.5,
        num_cpus=0,
    )
    torch_node = g.model(
        "torch_gpu",
        runtime="torch",
        model_path=os.path.join(artifacts, "mlp.pt"),
        output_names=["probabilities"],
        num_gpus=0.5,
        num_cpus=0,
    )
    g.entry = g.ensemble("both", members=[onnx, torch_node], outputs=["probabilities"], num_cpus=0)
    url = deploy(g.build(), "realgpu")
    x = np.load(os.path.join(artifacts, "test.npz"))["x"][:5] / 16.0
    assert http.post(f"{url}/predict", json={"inputs": x.tolist()}).status_code == 200
    onnx_info = serve.get_deployment_handle("onnx_gpu", "realgpu").stats.remote().result()
    torch_info = serve.get_deployment_handle("torch_gpu", "realgpu").stats.remote().result()
    assert onnx_info["providers"][0] == "CUDAExecutionProvider"
    assert torch_info["device"] == "cuda:0"
