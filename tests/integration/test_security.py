"""Secure defaults on a live cluster: no internal text or secrets out, honest readiness, and
feedback that cannot poison a router."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from graphs import Graph, tensor
from tests.integration import helpers
from tests.support import wait_for

X = [tensor("x", "FP32", [-1, 4])]
ROW = {"inputs": {"x": [[1.0, 2.0, 3.0, 4.0]]}}


def test_failures_answer_an_error_id_and_the_node_never_the_exception(
    deploy: Callable[..., str], http: httpx.Client
) -> None:
    g = Graph("failing", inputs=X)
    g.entry = g.preprocess(helpers.double, name="pre") >> g.model(
        "broken", runtime="python", model_class=helpers.Broken, num_cpus=0
    )
    url = deploy(g.build(), "failing")
    r = http.post(f"{url}/predict", json=ROW)
    assert r.status_code == 500
    body = r.json()
    assert body["error"] == "NodeError" and body["node"] == "broken"
    assert len(body["error_id"]) == 12 and body["error_id"] in body["detail"]
    assert "exploded" not in r.text and "Traceback" not in r.text
    oip = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    r = http.post(f"{url}/v2/models/failing/infer", json=oip)
    assert r.status_code == 500 and "exploded" not in r.text and r.json()["error_id"]


def test_graph_page_redacts_credentials(deploy: Callable[..., str], http: httpx.Client) -> None:
    g = Graph("keyed", inputs=X)
    g.entry = g.preprocess(
        helpers.Keyed, name="keyed", init_kwargs={"api_token": "sk-live-123", "scale": 2.0}
    )
    url = deploy(g.build(), "keyed")
    assert http.post(f"{url}/predict", json=ROW).json()["outputs"]["x"] == [[2, 4, 6, 8]]
    page = http.get(f"{url}/graph")
    assert page.status_code == 200 and "sk-live-123" not in page.text
    node = page.json()["nodes"][0]
    assert node["init_kwargs"] == {"api_token": "***", "scale": 2.0}


def test_readiness_is_503_until_every_node_answers(
    deploy: Callable[..., str], http: httpx.Client
) -> None:
    g = Graph("unready", inputs=X)
    # Two whole GPUs on a cluster with one: the node's replica never starts.
    # A replica still waiting for its resources is only killed after its grace period.
    g.entry = g.model(
        "big",
        runtime="python",
        model_class=helpers.Echo,
        num_gpus=2,
        num_cpus=0,
        graceful_shutdown_timeout_s=1,
    )
    url = deploy(g.build(), "unready", wait=False)
    live = wait_for(lambda: http.get(f"{url}/v2/health/live").status_code == 200, 120, "ingress up")
    assert live
    r = http.get(f"{url}/v2/health/ready", timeout=30)
    assert r.status_code == 503 and "not ready" in r.json()["error"]
    r = http.get(f"{url}/v2/models/unready/ready", timeout=30)
    assert r.status_code == 503

    import tritonclient.http as triton

    client = triton.InferenceServerClient(url="127.0.0.1:8000/unready", network_timeout=30)
    assert client.is_server_live() and not client.is_server_ready()
    assert not client.is_model_ready("unready")
