"""The digits demo deployed from its Serve config with Ray's CLI, called over HTTP and OIP."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from ray import serve

from graphs.examples.digits import ensure_trained
from tests.support import (
    BASE_URL,
    CONTROL_HEADERS,
    ROOT,
    dashboard_auth,
    delete_app,
    ensure_serve,
    fuzz,
    serve_cli,
    serve_logs,
    wait_app_running,
    wait_for,
)

URL = f"{BASE_URL}/digits"
#: Serve deployments of the digits graph: the ingress (the scaler, router and ensemble run in
#: its replicas, fused) and one per model.
DEPLOYMENTS = {"ingress", "logreg", "mlp"}


@pytest.fixture(scope="module")
def digits(ray_cluster: None) -> Iterator[str]:
    ensure_serve()
    ensure_trained()
    serve_cli("deploy", "configs/digits.yaml")
    wait_app_running("digits")
    yield URL
    delete_app("digits")


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    data = np.load(os.path.join(ensure_trained(), "test.npz"))
    return data["x"], data["y"]


def test_a_deployment_per_model_and_the_cheap_nodes_in_the_ingress(
    digits: str, http: httpx.Client
) -> None:
    status = serve_cli("status").stdout
    for name in DEPLOYMENTS:
        assert f"      {name}:" in status
    assert set(serve.status().applications["digits"].deployments) == DEPLOYMENTS
    nodes = {n["name"]: n for n in http.get(f"{digits}/graph").json()["nodes"]}
    assert {name: n["deployment"] for name, n in nodes.items()} == {
        "scale": "ingress",
        "split": "ingress",
        "both": "ingress",
        "logreg": "logreg",
        "mlp": "mlp",
    }
    assert nodes["both"]["placement"] == "fused into ingress (fusion: cheap)"


def test_config_deployments_override_node_settings(digits: str) -> None:
    details = httpx.get(
        "http://127.0.0.1:8265/api/serve/applications/", timeout=10, headers=dashboard_auth()
    ).json()
    deployments = details["applications"]["digits"]["deployments"]
    logreg = deployments["logreg"]["deployment_config"]
    assert logreg["max_ongoing_requests"] == 64
    assert logreg["ray_actor_options"]["num_cpus"] == 0.2
    # Not overridden: the graph's own default.
    ingress = deployments["ingress"]["deployment_config"]
    assert ingress["ray_actor_options"]["num_cpus"] == 0.1
    assert ingress["max_queued_requests"] == 200
    autoscaling = deployments["mlp"]["deployment_config"]["autoscaling_config"]
    assert (autoscaling["min_replicas"], autoscaling["max_replicas"]) == (1, 2)


def test_predict_is_accurate_and_reports_path(
    digits: str, held_out: tuple[np.ndarray, np.ndarray], http: httpx.Client
) -> None:
    x, y = held_out
    r = http.post(f"{digits}/predict", json={"inputs": {"input": x.tolist()}})
    assert r.status_code == 200, r.text
    body = r.json()
    labels = np.asarray(body["outputs"]["label"])
    probs = np.asarray(body["outputs"]["probabilities"])
    assert probs.shape == (len(x), 10) and labels.shape == (len(x),)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert (labels == y).mean() >= 0.93
    assert body["served_by"][:2] == ["scale", "split"]
    assert body["served_by"][2:] in (["logreg"], ["mlp"], ["both", "logreg", "mlp"])
    assert r.headers["x-request-id"] == body["request_id"]


def test_fused_nodes_log_each_call_with_the_request_id(digits: str, http: httpx.Client) -> None:
    # As Serve logs a handle call in the replica of a deployment: the fused nodes' lines are in
    # the ingress replica's log, the models' in their own replicas' logs.
    request_id = f"fused-log-{os.getpid()}"
    x = np.load(os.path.join(ensure_trained(), "test.npz"))["x"][:1]
    for _ in range(8):  # until the router has picked the ensemble once
        r = http.post(
            f"{digits}/predict",
            json={"inputs": {"input": x.tolist()}},
            headers={"X-Request-Id": request_id},
        )
        assert r.status_code == 200, r.text
        if "both" in r.json()["served_by"]:
            break
    expected = [
        ("replica_digits_ingress_*", f"{request_id} -- CALL {node}.__call__ OK ")
        for node in ("scale", "split", "both")
    ] + [
        (f"replica_digits_{model}_*", f"{request_id} -- CALL __call__ OK ")
        for model in ("logreg", "mlp")
    ]

    def logged() -> bool:
        return all(line in serve_logs(pattern) for pattern, line in expected)

    wait_for(logged, 15, "access-log lines of every node")


def test_router_splits_by_weight_and_request_id_is_kept(digits: str, http: httpx.Client) -> None:
    seen = {}
    for i in range(120):
        r = http.post(
            f"{digits}/predict", json={"inputs": [[0.0] * 64]}, headers={"X-Request-Id": f"req-{i}"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["request_id"] == f"req-{i}"
        arm = r.json()["served_by"][2]
        seen[arm] = seen.get(arm, 0) + 1
    # weights 0.25 / 0.25 / 0.5 over 120 requests: every arm is used, the ensemble most.
    assert set(seen) == {"logreg", "mlp", "both"}
    assert seen["both"] > max(seen["logreg"], seen["mlp"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputs": {"input": [[1.0, 2.0]]}}, ["body", "inputs", "input"]),
        ({"inputs": {"pixels": [[0.0] * 64]}}, ["body", "inputs", "pixels"]),
        ({"inputs": {"input": [["a"] * 64]}}, ["body", "inputs", "input"]),
        ({"inputs": {}}, ["body", "inputs", "input"]),
        ({"data": [[0.0] * 64]}, ["body", "inputs"]),
    ],
)
def test_bad_requests_are_422_naming_the_field(
    digits: str, http: httpx.Client, body: dict, field: list[str]
) -> None:
    r = http.post(f"{digits}/predict", json=body)
    assert r.status_code == 422, r.text
    assert field in [d["loc"] for d in r.json()["detail"]]


def test_invalid_json_is_4xx(digits: str, http: httpx.Client) -> None:
    r = http.post(
        f"{digits}/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert "json" in r.text.lower()


def test_oip_metadata_health_and_json_infer(
    digits: str, held_out: tuple[np.ndarray, np.ndarray], http: httpx.Client
) -> None:
    assert http.get(f"{digits}/v2/health/live").json() == {"live": True}
    assert http.get(f"{digits}/v2/health/ready").json() == {"ready": True}
    assert http.get(f"{digits}/v2/models/digits/ready").json()["ready"] is True
    meta = http.get(f"{digits}/v2/models/digits").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert {o["name"]: o["shape"] for o in meta["outputs"]} == {
        "probabilities": [-1, 10],
        "label": [-1],
    }
    x, y = held_out
    body = {
        "id": "abc",
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [20, 64],
                "data": x[:20].ravel().tolist(),
            }
        ],
    }
    r = http.post(f"{digits}/v2/models/digits/infer", json=body)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert r.json()["id"] == "abc" and r.json()["model_name"] == "digits"
    assert out["label"]["datatype"] == "INT64" and out["label"]["shape"] == [20]
    assert out["probabilities"]["shape"] == [20, 10]
    assert (np.asarray(out["label"]["data"]) == y[:20]).mean() >= 0.85


def test_oip_errors(digits: str, http: httpx.Client) -> None:
    r = http.get(f"{digits}/v2/models/nope")
    assert r.status_code == 404 and "nope" in r.json()["error"]
    bad = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 63], "data": [0] * 63}]}
    r = http.post(f"{digits}/v2/models/digits/infer", json=bad)
    assert r.status_code == 422 and "inputs[0].data" in r.json()["error"]


def test_control_plane_is_closed_by_default(digits: str, http: httpx.Client) -> None:
    url = f"{digits}/routers/split/weights"
    body = json.dumps({"weights": [1, 0, 0]})
    # A web page can send text/plain without a preflight: refused before anything runs.
    r = http.post(url, content=body, headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["detail"]
    r = http.post(url, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]
    r = http.post(url, content=body, headers={**CONTROL_HEADERS, "content-type": "text/plain"})
    assert r.status_code == 415
    split = next(n for n in http.get(f"{digits}/graph").json()["nodes"] if n["name"] == "split")
    assert split["state"]["weights"] == [0.25, 0.25, 0.5]  # nothing changed
    r = http.post(url, content=b"{}", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = http.post(f"{digits}/feedback", content=b'{"token": "x", "reward": 1}')
    assert r.status_code == 415


NESTED = "[" * 5000 + "]" * 5000
ONE = {"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (json.dumps({"inputs": [ONE], "parameters": "x"}), "parameters"),
        (json.dumps({"inputs": [{**ONE, "name": ["input"]}]}), "inputs[0].name"),
        (json.dumps({"inputs": [{**ONE, "shape": [1, 64, -3]}]}), "inputs[0].shape[2]"),
        (
            '{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1], "data": '
            + NESTED
            + "}]}",
            "body",
        ),
        (json.dumps({"inputs": [{**ONE, "data": [float("nan")] + [0.0] * 63}]}), "inputs[0].data"),
    ],
)
def test_bad_oip_bodies_are_json_4xx_naming_the_field(
    digits: str, http: httpx.Client, raw: str, field: str
) -> None:
    r = http.post(
        f"{digits}/v2/models/digits/infer",
        content=raw.encode(),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"].startswith(field) or field == "body", r.json()


def test_non_finite_pixels_are_422_and_outputs_always_json(digits: str, http: httpx.Client) -> None:
    raw = '{"inputs": {"input": [[NaN' + ", 0" * 63 + "]]}}"
    r = http.post(
        f"{digits}/predict", content=raw.encode(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "inputs", "input"]
    deep = '{"inputs": {"input": ' + NESTED + "}}"
    r = http.post(
        f"{digits}/predict", content=deep.encode(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["detail"]


def test_oip_versions_are_checked(digits: str, http: httpx.Client) -> None:
    assert http.get(f"{digits}/v2/models/digits/versions/1").status_code == 200
    r = http.get(f"{digits}/v2/models/digits/versions/7")
    assert r.status_code == 404 and "version" in r.json()["error"]
    r = http.post(f"{digits}/v2/models/digits/versions/7/infer", json={"inputs": [ONE]})
    assert r.status_code == 404


def test_triton_client_works_unchanged(
    digits: str, held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url="127.0.0.1:8000/digits")
    assert client.is_server_live() and client.is_model_ready("digits")
    assert client.get_model_metadata("digits")["name"] == "digits"
    x, y = held_out
    inp = triton.InferInput("input", [50, 64], "FP32")
    inp.set_data_from_numpy(x[:50])  # binary tensor data extension, Triton's default
    result = client.infer("digits", [inp])
    assert result.as_numpy("probabilities").shape == (50, 10)
    assert (result.as_numpy("label") == y[:50]).mean() >= 0.85
    only = client.infer("digits", [inp], outputs=[triton.InferRequestedOutput("label")])
    assert only.as_numpy("probabilities") is None
    assert only.as_numpy("label").shape == (50,)


def test_graph_and_docs(digits: str, http: httpx.Client) -> None:
    graph = http.get(f"{digits}/graph").json()
    assert {n["name"] for n in graph["nodes"]} == {"scale", "split", "logreg", "mlp", "both"}
    split = next(n for n in graph["nodes"] if n["name"] == "split")
    assert split["state"]["weights"] == [0.25, 0.25, 0.5]
    assert {"from": "both", "to": "mlp", "kind": "member"} in graph["edges"]
    assert {"from": "scale", "to": "split", "kind": "then"} in graph["edges"]
    assert http.get(f"{digits}/docs").status_code == 200
    spec = http.get(f"{digits}/openapi.json").json()
    assert "/predict" in spec["paths"] and "/v2/models/{model_name}/infer" in spec["paths"]
    # Self-contained: request bodies are inlined, no reference into a schema's own $defs.
    assert "#/$defs/" not in json.dumps(spec)
    infer = spec["paths"]["/v2/models/{model_name}/infer"]["post"]["requestBody"]
    assert "inputs" in infer["content"]["application/json"]["schema"]["properties"]


def test_demo_client_prints_accuracy(digits: str) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "graphs.examples.digits_client", "--batch", "16"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result = json.loads(out.stdout)
    assert result["images"] == 450 and result["accuracy"] >= 0.93


def test_openapi_document_and_docs_page_are_served_under_the_prefix(
    digits: str, http: httpx.Client
) -> None:
    doc = http.get(f"{digits}/openapi.json").json()
    assert doc["servers"] == [{"url": "/digits"}]
    assert not [p for p in doc["paths"] if p.startswith("/v1/")]  # not an LLM graph
    page = http.get(f"{digits}/docs")
    assert page.status_code == 200 and "/digits/openapi.json" in page.text


def test_schema_fuzzer_finds_every_answer_documented(digits: str) -> None:
    # No stateful phase: it followed none of the document's links here (see fuzz), and spent
    # 23 of the 45 s repeating the fuzzing phase's kind of calls. The fuzzing phase keeps the
    # time it had (18 s, about 2,900 cases).
    fuzz(digits, seconds=24, stateful=False)
