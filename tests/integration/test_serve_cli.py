"""A graph declared in Python goes through Ray's own CLI: ``serve build`` then ``serve deploy``."""

from __future__ import annotations

import os

import httpx
import numpy as np
import yaml
from ray.serve.schema import ServeDeploySchema

from graphs import load_graph
from graphs.examples.digits import ensure_trained
from graphs.examples.digits_dsl import build_graph
from tests.support import BASE_URL, delete_app, serve_cli, wait_app_running


def test_python_graph_equals_yaml_graph() -> None:
    ensure_trained()

    def by_name(spec: object) -> dict:
        dump = spec.model_dump()  # type: ignore[attr-defined]
        dump["nodes"] = sorted(dump["nodes"], key=lambda n: n["name"])
        return dump

    assert by_name(build_graph().spec()) == by_name(load_graph("graphs/examples/digits.yaml"))


def test_serve_build_writes_a_config_that_deploys(serve_up: None, tmp_path: object) -> None:
    ensure_trained()
    out = os.path.join(str(tmp_path), "digits-built.yaml")
    serve_cli("build", "graphs.examples.digits_dsl:app", "-o", out)
    with open(out) as f:
        config = yaml.safe_load(f)
    ServeDeploySchema.model_validate(config)  # a valid Serve config
    app = config["applications"][0]
    assert app["import_path"] == "graphs.examples.digits_dsl:app"
    # The models have deployments of their own; scaler, router and ensemble run in the ingress.
    assert {d["name"] for d in app["deployments"]} == {"logreg", "mlp", "ingress"}
    app["name"], app["route_prefix"] = "built", "/built"
    with open(out, "w") as f:
        yaml.safe_dump(config, f)
    serve_cli("deploy", out)
    try:
        wait_app_running("built")
        x = np.load(os.path.join(ensure_trained(), "test.npz"))["x"][:8]
        r = httpx.post(f"{BASE_URL}/built/predict", json={"inputs": x.tolist()}, timeout=60)
        assert r.status_code == 200, r.text
        assert len(r.json()["outputs"]["label"]) == 8
    finally:
        delete_app("built")
