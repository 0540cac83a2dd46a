"""A graph's OpenAPI document (graphs._openapi), from the FastAPI app the ingress builds, without
Ray: self-contained, only the routes the graph has, path parameters limited to what exists and
every answer documented; and the answers the document promises, from the app itself."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from graphs.http_api import make_app
from graphs.runner import GraphRunner
from graphs.spec import GraphSpec
from graphs.validate import PACKAGE_ROOT, parse_graph

EXAMPLES = os.path.join(PACKAGE_ROOT, "graphs", "examples")
JSON = {"content-type": "application/json"}


def example(name: str, **changes: Any) -> GraphSpec:
    with open(os.path.join(EXAMPLES, f"{name}.yaml")) as f:
        data = {**yaml.safe_load(f), **changes}
    return parse_graph(data, base_dir=PACKAGE_ROOT, check_files=False)


def app_of(spec: GraphSpec) -> FastAPI:
    # The nodes with deployments of their own are never called here: the document and the
    # answers below come before any call into the graph.
    return make_app(GraphRunner(spec, {}))


def refs(node: Any) -> list[str]:
    if isinstance(node, Mapping):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]


def call(app: FastAPI, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(send())


@pytest.fixture(scope="module")
def digits() -> FastAPI:
    return app_of(example("digits"))


@pytest.fixture(scope="module")
def llm() -> FastAPI:
    return app_of(example("llm_ab", limits={"max_tokens": 16}))


@pytest.mark.parametrize("graph", ["digits", "llm"])
def test_every_reference_resolves_inside_the_document(graph: str, request: Any) -> None:
    doc = request.getfixturevalue(graph).openapi()
    found = refs(doc)
    assert found and not [r for r in found if not r.startswith("#/components/")]
    for ref in found:
        assert isinstance(resolve(doc, ref), dict), ref
    assert "$defs" not in str(doc["paths"])


def test_a_graph_without_an_llm_lists_no_openai_route_and_has_none(digits: FastAPI) -> None:
    doc = digits.openapi()
    assert not [p for p in doc["paths"] if p.startswith("/v1/")]
    assert {"/predict", "/feedback", "/v2/models/{model_name}/infer"} <= set(doc["paths"])
    r = call(digits, "POST", "/v1/chat/completions", json={"model": "digits"})
    assert r.status_code == 404


def test_path_parameters_list_the_names_that_exist(digits: FastAPI) -> None:
    doc = digits.openapi()
    enums = {
        (path, p["name"]): p["schema"]["enum"]
        for _, path, op in operations(doc)
        for p in op.get("parameters", [])
    }
    assert enums[("/v2/models/{model_name}", "model_name")] == ["digits"]
    assert enums[("/v2/models/{model_name}/versions/{version}/infer", "version")] == ["1"]
    assert enums[("/routers/{router}/{action}", "router")] == ["split"]
    assert enums[("/routers/{router}/{action}", "action")] == ["weights", "reset"]
    # The unversioned routes have no version parameter at all (query or path).
    assert {name for path, name in enums if path == "/v2/models/{model_name}"} == {"model_name"}


def test_every_operation_documents_its_error_answers_with_their_bodies(digits: FastAPI) -> None:
    doc = digits.openapi()
    for method, path, op in operations(doc):
        codes = set(op["responses"])
        assert {"200", "413", "500"} <= codes, (method, path)
        if method == "post":
            assert {"415", "503"} <= codes, (method, path)
        for code, answer in op["responses"].items():
            if code != "200":
                schema = answer["content"]["application/json"]["schema"]
                assert resolve(doc, schema["$ref"])["type"] == "object", (path, code)
    predict = doc["paths"]["/predict"]["post"]["responses"]
    assert {"422", "503", "504"} <= set(predict)
    assert "Retry-After" in predict["503"]["headers"]
    feedback = doc["paths"]["/feedback"]["post"]["responses"]
    assert {"400", "401", "409", "410", "422"} <= set(feedback)
    assert set(doc["paths"]["/routers/{router}/{action}"]["post"]["responses"]) >= {"401", "404"}
    infer = doc["paths"]["/v2/models/{model_name}/infer"]["post"]["responses"]
    assert infer["404"]["content"]["application/json"]["schema"]["$ref"].endswith("OIPErrorBody")


def test_tenant_limits_add_the_admission_answers() -> None:
    tenants = {
        "tenant": {"header": "X-Tenant"},
        "tenants": {"gold": {"requests_per_s": 10}},
        "unknown_tenant": "reject",
    }
    doc = app_of(example("digits", limits=tenants)).openapi()
    assert {"400", "401", "403", "429"} <= set(doc["paths"]["/predict"]["post"]["responses"])
    assert "429" not in doc["paths"]["/graph"]["get"]["responses"]  # GETs are not admitted


def test_a_graph_without_routers_has_no_control_route() -> None:
    data = example("digits").model_dump(mode="json", exclude_defaults=True)
    data["entry"] = ["scale", "mlp"]
    data["nodes"] = [n for n in data["nodes"] if n["name"] in ("scale", "mlp")]
    doc = app_of(parse_graph(data, base_dir=PACKAGE_ROOT, check_files=False)).openapi()
    assert not [p for p in doc["paths"] if p.startswith("/routers/")]


def test_an_llm_graph_documents_its_model_and_max_tokens(llm: FastAPI) -> None:
    doc = llm.openapi()
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    body = chat["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["model"]["enum"] == ["llm-ab"]
    for field in ("max_tokens", "max_completion_tokens", "min_tokens"):
        prop = body["properties"][field]
        (integer,) = [b for b in prop.get("anyOf", [prop]) if b["type"] == "integer"]
        assert integer["maximum"] == 16
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert chat["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "OpenAIErrorBody"
    )


def test_the_llm_graph_refuses_more_tokens_than_its_limit_naming_the_field(llm: FastAPI) -> None:
    for field in ("max_tokens", "max_completion_tokens", "min_tokens"):
        body = {"model": "llm-ab", "messages": [{"role": "user", "content": "hi"}], field: 17}
        r = call(llm, "POST", "/v1/chat/completions", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == field and "limits.max_tokens=16" in r.text


def test_layer_errors_on_openai_routes_are_in_openais_shape(llm: FastAPI) -> None:
    r = call(llm, "POST", "/v1/completions", content=b"{}", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_a_feedback_body_that_is_not_json_is_a_422_naming_the_body(digits: FastAPI) -> None:
    r = call(digits, "POST", "/feedback", content=b"\xff\xfe", headers=JSON)
    assert r.status_code == 422, r.text
    (problem,) = r.json()["detail"]
    assert problem["loc"] == ["body", "body"] and "not valid JSON" in problem["msg"]
    missing = call(digits, "POST", "/feedback", json={"token": "t"})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "reward"]


def test_docs_page_points_at_the_document(digits: FastAPI) -> None:
    page = call(digits, "GET", "/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    served = call(digits, "GET", "/openapi.json").json()
    assert served["paths"].keys() == digits.openapi()["paths"].keys()
