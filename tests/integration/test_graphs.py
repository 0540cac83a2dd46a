"""Graphs declared in Python, deployed with serve.run: runtimes, chains, ensembles, batching,
overload and errors, each with every node in a deployment of its own (``fusion: none``) and with
every node fused into the ingress (``fusion: all``): fusing must lose nothing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from ray import serve

from graphs import Graph, tensor
from tests.integration import helpers
from tests.support import wait_app_running

X = [tensor("x", "FP32", [-1, 4])]


@pytest.fixture(params=["none", "all"])
def fusion(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _name(base: str, fusion: str) -> str:
    return f"{base}-{fusion}"


def node_stats(app: str, node: str) -> dict[str, Any]:
    """A node's stats, through its own deployment or the ingress it is fused into."""
    status = serve.status().applications[app]
    if node in status.deployments:
        return dict(serve.get_deployment_handle(node, app_name=app).stats.remote().result())
    ingress = serve.get_deployment_handle("ingress", app_name=app)
    return dict(ingress.hosted.remote(node, "stats").result())


def _concurrently(url: str, rows: list[list[list[float]]]) -> list[httpx.Response]:
    """POST one request per entry of ``rows`` to ``url``'s /predict, all at once."""

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            posts = [client.post(f"{url}/predict", json={"inputs": {"x": r}}) for r in rows]
            return await asyncio.gather(*posts)

    return asyncio.run(fire())


def _post(http: httpx.Client, url: str, rows: list[list[float]]) -> httpx.Response:
    return http.post(f"{url}/predict", json={"inputs": {"x": rows}})


def test_python_dsl_chain_and_preprocess_kinds(
    deploy: Callable[..., str], http: httpx.Client, fusion: str
) -> None:
    g = Graph(_name("chain", fusion), inputs=X, fusion=fusion)
    first = g.preprocess(helpers.double, name="double")
    second = g.preprocess(helpers.add_one, name="add_one")  # async function
    model = g.model("echo", runtime="python", model_class=helpers.Echo, num_cpus=0)
    g.entry = first >> second >> model
    url = deploy(g.build(), _name("chain", fusion))
    r = _post(http, url, [[1, 2, 3, 4]])
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["x"] == [[3.0, 5.0, 7.0, 9.0]]
    assert r.json()["served_by"] == ["double", "add_one", "echo"]


def test_torch_runtimes(
    tmp_path: object, deploy: Callable[..., str], http: httpx.Client, fusion: str
) -> None:
    torch.manual_seed(0)
    net = helpers.TinyNet().eval()
    folder = str(tmp_path)
    state = os.path.join(folder, "tiny.state")
    torch.save(net.state_dict(), state)
    scripted = os.path.join(folder, "tiny.pt")
    torch.jit.save(torch.jit.script(net), scripted)
    exported = os.path.join(folder, "tiny.pt2")
    torch.export.save(
        torch.export.export(
            net, (torch.zeros(2, 4),), dynamic_shapes=({0: torch.export.Dim("batch")},)
        ),
        exported,
    )
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    with torch.inference_mode():
        expected = net(torch.from_numpy(x)).numpy()

    g = Graph(_name("torchy", fusion), inputs=X, fusion=fusion)
    a = g.model(
        "from_class",
        runtime="torch",
        model_class=helpers.TinyNet,
        state_dict=state,
        output_names=["y"],
        num_cpus=0,
    )
    b = g.model("from_script", runtime="torch", model_path=scripted, output_names=["y"], num_cpus=0)
    c = g.model("from_export", runtime="torch", model_path=exported, output_names=["y"], num_cpus=0)
    g.entry = g.ensemble("all", members=[a, b, c], combiner="mean", num_cpus=0)
    url = deploy(g.build(), _name("torchy", fusion))
    r = _post(http, url, x.tolist())
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.asarray(r.json()["outputs"]["y"]), expected, rtol=1e-5)
    assert sorted(r.json()["served_by"]) == sorted(
        ["all", "from_class", "from_script", "from_export"]
    )


def _sleepy(g: Graph, name: str, **init_kwargs: float) -> Any:
    """A python model node that sleeps ``seconds`` (``helpers.Sleepy``), on no CPU."""
    return g.model(
        name, runtime="python", model_class=helpers.Sleepy, num_cpus=0, init_kwargs=init_kwargs
    )


def test_ensemble_quorum_and_timeout(
    deploy: Callable[..., str], http: httpx.Client, fusion: str
) -> None:
    # Timeouts leave cold handles and a loaded 2-core machine room (3 s), and the slow member
    # stays well past them (8 s), so only the quorum decides.
    g2 = Graph(_name("quorum", fusion), inputs=X, fusion=fusion)
    f2, s2 = _sleepy(g2, "fast", seconds=0.0), _sleepy(g2, "slow", seconds=8.0)
    g2.entry = g2.ensemble("strict", members=[f2, s2], timeout_s=3.0, num_cpus=0)
    # Submitted first, so that both apps start together.
    url2 = deploy(g2.build(), _name("quorum", fusion), wait=False)

    g = Graph(_name("ens", fusion), inputs=X, fusion=fusion)
    fast = _sleepy(g, "fast", seconds=0.0, factor=1.0)
    slow = _sleepy(g, "slow", seconds=8.0, factor=3.0)
    broken = g.model("broken", runtime="python", model_class=helpers.Broken, num_cpus=0)
    lenient = g.ensemble(
        "lenient", members=[fast, slow, broken], quorum=1, timeout_s=3.0, num_cpus=0
    )
    strict = g.ensemble("strict", members=[fast, slow], timeout_s=3.0, num_cpus=0)
    g.entry = g.router("pick", {lenient: 1.0, strict: 0.0}, num_cpus=0)
    url = deploy(g.build(), _name("ens", fusion))
    r = _post(http, url, [[1, 1, 1, 1]])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["outputs"]["x"] == [[1.0, 1.0, 1.0, 1.0]]  # only the fast member made it
    assert body["served_by"] == ["pick", "lenient", "fast"]
    note = body["notes"]["lenient"]
    assert note["answered"] == ["fast"] and note["timed_out"] == ["slow"]
    # Members' failures name the node and an error id; their exception text stays in the log.
    assert "node 'broken' failed" in note["failed"]["broken"]
    assert "error id" in note["failed"]["broken"] and "exploded" not in note["failed"]["broken"]

    wait_app_running(_name("quorum", fusion))
    r = _post(http, url2, [[1, 1, 1, 1]])
    assert r.status_code == 504, (r.headers, r.text)
    assert "1 of 2 members answered" in r.json()["detail"]
    assert r.json()["node"] == "strict" and len(r.json()["error_id"]) == 12


def test_node_failure_is_a_json_error(
    deploy: Callable[..., str], http: httpx.Client, fusion: str
) -> None:
    g = Graph(_name("broken", fusion), inputs=X, fusion=fusion)
    g.entry = g.model("boom", runtime="python", model_class=helpers.Broken, num_cpus=0)
    url = deploy(g.build(), _name("broken", fusion))
    r = _post(http, url, [[1, 2, 3, 4]])
    assert r.status_code == 500
    body = r.json()
    assert (body["error"], body["node"]) == ("NodeError", "boom")
    assert body["detail"] == (
        f"node 'boom' failed; the server log has the details under error id {body['error_id']}"
    )


def test_batching_forms_batches_under_concurrency(deploy: Callable[..., str], fusion: str) -> None:
    g = Graph(_name("batchy", fusion), inputs=X, fusion=fusion)
    g.entry = g.model(
        "echo",
        runtime="python",
        model_class=helpers.Sleepy,
        num_cpus=0,
        init_kwargs={"seconds": 0.05},
        batching={"max_batch_size": 16, "max_wait_ms": 20},
    )
    url = deploy(g.build(), _name("batchy", fusion))

    responses = _concurrently(url, [[[i, 0, 0, 0]] for i in range(32)])
    assert all(r.status_code == 200 for r in responses)
    # each request gets its own row back, not a neighbour's
    assert [r.json()["outputs"]["x"][0][0] for r in responses] == [float(i) for i in range(32)]
    stats = node_stats(_name("batchy", fusion), "echo")
    assert stats["max_batch_size_seen"] > 1
    assert stats["batches"] < 32


def test_overload_is_503_with_retry_after(deploy: Callable[..., str]) -> None:
    g = Graph("busy", inputs=X)
    g.entry = g.model(
        "slow",
        runtime="python",
        model_class=helpers.Sleepy,
        num_cpus=0,
        init_kwargs={"seconds": 0.5},
        max_ongoing_requests=1,
        max_queued_requests=1,
    )
    url = deploy(g.build(), "busy")
    responses = _concurrently(url, [[[0, 0, 0, 0]]] * 8)
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 503 in codes, codes
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["retry-after"] == "1"
    assert "overloaded" in rejected.json()["detail"]


def test_body_limit_is_413(deploy: Callable[..., str], http: httpx.Client, fusion: str) -> None:
    g = Graph(_name("small", fusion), inputs=X, fusion=fusion, max_body_bytes=2000)
    g.entry = g.model("echo", runtime="python", model_class=helpers.Echo, num_cpus=0)
    url = deploy(g.build(), _name("small", fusion))
    assert _post(http, url, [[1, 2, 3, 4]]).status_code == 200
    r = _post(http, url, [[1.5, 2.5, 3.5, 4.5]] * 200)
    assert r.status_code == 413
    assert "max_body_bytes" in r.json()["detail"]

    def chunks() -> object:
        for _ in range(100):
            yield b"[[1.5, 2.5, 3.5, 4.5]],"

    r = http.post(f"{url}/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_fusion_all_keeps_a_gpu_node_apart_and_says_why(
    deploy: Callable[..., str], http: httpx.Client
) -> None:
    g = Graph("gpufuse", inputs=X, fusion="all")
    gpu = g.model("gpu_echo", runtime="python", model_class=helpers.Echo, num_gpus=0.25)
    g.entry = g.preprocess(helpers.double, name="double") >> gpu
    url = deploy(g.build(), "gpufuse")
    assert _post(http, url, [[1, 2, 3, 4]]).json()["served_by"] == ["double", "gpu_echo"]
    nodes = {n["name"]: n for n in http.get(f"{url}/graph").json()["nodes"]}
    assert nodes["double"]["deployment"] == "ingress"
    assert nodes["gpu_echo"]["deployment"] == "gpu_echo"
    assert nodes["gpu_echo"]["placement"] == "own deployment (sets num_gpus of its own)"
    assert set(serve.status().applications["gpufuse"].deployments) == {"ingress", "gpu_echo"}
