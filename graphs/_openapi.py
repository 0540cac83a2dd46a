"""A graph's OpenAPI document, self-contained and exact: what :func:`install` puts behind
``/<graph>/openapi.json`` (and ``/docs``).

FastAPI documents what its routes declare; the ingress answers more than that. Its ASGI layers
refuse oversized bodies (413), other media types (415), tenants over their limits (400, 401, 403,
429) and a full replica (503); routes answer the graph's own errors (404, 409, 410, 422, 504...)
and anything unexpected is a 500 with an error id. :func:`complete` adds each operation's real
answers with the JSON body each one carries (the graph's, the Open Inference Protocol's or
OpenAI's error shape), and constrains path parameters and OpenAI ``model`` fields to the names
that exist, so a schema fuzzer finds every answer documented.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from graphs.openai_protocol import TOKEN_FIELDS
from graphs.spec import GraphSpec, RouterNode
from routing.state import ACTIONS

__all__ = ["complete", "control_actions", "install", "json_body"]


def _inline(node: Any, defs: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """``node`` with every ``#/$defs/...`` reference replaced by its definition: a schema
    embedded in an OpenAPI document cannot point at its own ``$defs`` (references resolve from
    the document's root)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name in seen:  # a recursive model: describe the nested level as any object
                return {"type": "object"}
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**_inline(defs[name], defs, (*seen, name)), **_inline(rest, defs, seen)}
        return {k: _inline(v, defs, seen) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs, seen) for v in node]
    return node


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a route's required JSON body as ``model`` (self-contained)."""
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline(schema, schema.get("$defs", {}))}},
        }
    }


# --- error bodies ------------------------------------------------------------------------------

_REF = "#/components/schemas/"
#: Error bodies by route family: the graph's own, the Open Inference Protocol's, OpenAI's.
_ERROR_SCHEMAS: dict[str, dict[str, Any]] = {
    "GraphErrorBody": {
        "title": "GraphErrorBody",
        "description": "An error of the graph's own routes: the error's name and what to do; "
        "node failures and deadlines also name the node and an error id for the server log.",
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string", "description": "The error's name."},
            "detail": {"type": "string", "description": "What went wrong, naming the field."},
            "node": {"type": ["string", "null"], "description": "The node concerned."},
            "error_id": {"type": "string", "description": "Id of the server log line."},
        },
    },
    "OIPErrorBody": {
        "title": "OIPErrorBody",
        "description": "An error in the Open Inference Protocol's shape.",
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "What went wrong, naming the field."},
            "error_id": {"type": "string", "description": "Id of the server log line."},
        },
    },
    "OpenAIErrorBody": {
        "title": "OpenAIErrorBody",
        "description": "An error in OpenAI's shape.",
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
}
_WHY = {
    400: "Bad request: a malformed token or tenant header, or (OpenAI routes) a bad field.",
    401: "A missing or refused credential.",
    403: "The tenant is not allowed.",
    404: "No such model, router or action.",
    409: "The action does not fit the current state (already used, wrong policy or stage).",
    410: "The feedback token expired.",
    413: "The body is larger than the graph's max_body_bytes.",
    415: "The body is not application/json.",
    422: "The request does not match the schema; the body names the field.",
    429: "The tenant is over its rate or concurrency limit; retry after Retry-After seconds.",
    500: "A node or the server failed; the body carries an error id for the server log.",
    503: "Overloaded, not ready, or a circuit breaker is open; retry after Retry-After seconds.",
    504: "The deadline passed; the body names the node.",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "string"},
    }
}

# Each route's own answers (the ASGI layers' are added in _statuses).
_GUARDED = {500, 503, 504}  # a call into the graph (GraphRunner.guard / run)
_OWN: dict[tuple[str, str], set[int]] = {
    ("post", "/predict"): {422} | _GUARDED,
    ("get", "/graph"): {500},
    ("post", "/feedback"): {400, 401, 409, 410, 422} | _GUARDED,
    ("get", "/experiments"): _GUARDED,
    ("post", "/routers/{router}/{action}"): {401, 404, 409, 422} | _GUARDED,
    ("get", "/v2/health/live"): set(),
    ("get", "/v2/health/ready"): {503},
    ("get", "/v2"): set(),
    ("get", "/v2/models/{model_name}"): {404},
    ("get", "/v2/models/{model_name}/versions/{version}"): {404},
    ("get", "/v2/models/{model_name}/ready"): {404, 503},
    ("get", "/v2/models/{model_name}/versions/{version}/ready"): {404, 503},
    ("post", "/v2/models/{model_name}/infer"): {404, 422} | _GUARDED,
    ("post", "/v2/models/{model_name}/versions/{version}/infer"): {404, 422} | _GUARDED,
    ("post", "/v1/chat/completions"): {400, 404} | _GUARDED,
    ("post", "/v1/completions"): {400, 404} | _GUARDED,
    ("get", "/v1/models"): set(),
}
#: Successful answers that are not (only) JSON.
_OK_CONTENT: dict[str, dict[str, Any]] = {
    "/infer": {
        "application/json": {"schema": {"type": "object"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
    "completions": {
        "application/json": {"schema": {"type": "object"}},
        # Each event (what OpenAPI 3.2 calls itemSchema): a chunk as JSON, then [DONE].
        "text/event-stream": {
            "schema": {
                "type": "object",
                "required": ["data"],
                "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
            }
        },
    },
}


def _family(path: str) -> str:
    if path.startswith("/v2"):
        return "OIPErrorBody"
    if path.startswith("/v1/"):
        return "OpenAIErrorBody"
    return "GraphErrorBody"


def _statuses(spec: GraphSpec, method: str, path: str) -> set[int]:
    """Every error status ``method path`` answers with on ``spec``'s graph."""
    found = _OWN.get((method, path), set()) | {413, 500}  # RequestGate, ErrorBoundary
    if method == "post":
        found.add(415)
        if not path.startswith("/routers/"):  # admission control (graphs.admission)
            found.add(503)
            if spec.limits.tenant is not None:
                found |= {400, 401, 403, 429}
    return found


def _error_response(status: int, path: str) -> dict[str, Any]:
    family = _family(path)
    graph_validation = status == 422 and family == "GraphErrorBody"
    schema = {"$ref": _REF + ("HTTPValidationError" if graph_validation else family)}
    answer: dict[str, Any] = {
        "description": _WHY[status],
        "content": {"application/json": {"schema": schema}},
    }
    if status in (429, 503):
        answer["headers"] = copy.deepcopy(_RETRY_AFTER)
    return answer


def control_actions(spec: GraphSpec) -> list[str]:
    """The control actions some router of ``spec`` takes (``/routers/{router}/{action}``)."""
    policies = {n.policy for n in spec.nodes if isinstance(n, RouterNode)}
    return [action for action, takers in ACTIONS.items() if policies & set(takers)]


def _constrain(schema: dict[str, Any], field: str, **rules: Any) -> None:
    """Add ``rules`` to the (integer or string) type of ``field`` in an object ``schema``."""
    prop = schema.get("properties", {}).get(field)
    if prop is None:
        return
    for branch in prop.get("anyOf", [prop]):
        if branch.get("type") != "null":
            branch.update(rules)


def complete(doc: dict[str, Any], spec: GraphSpec, max_tokens: int | None = None) -> dict[str, Any]:
    """``doc`` (FastAPI's document of a graph's app) with every answer of every operation, path
    parameters limited to the names that exist and the OpenAI bodies' ``model`` to the graph's
    name (``max_tokens`` capped when given). Changes ``doc`` in place and returns it."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(copy.deepcopy(_ERROR_SCHEMAS))
    if "HTTPValidationError" not in schemas:  # FastAPI adds it only with a declared body
        schemas["HTTPValidationError"] = {
            "title": "HTTPValidationError",
            "type": "object",
            "properties": {"detail": {"type": "array", "items": {"type": "object"}}},
        }
    names = {
        "model_name": [spec.name],
        "version": [spec.version],
        "router": [n.name for n in spec.nodes if isinstance(n, RouterNode)],
        "action": control_actions(spec),
    }
    for path, operations in doc.get("paths", {}).items():
        for method, op in operations.items():
            for param in op.get("parameters", []):
                if param.get("in") == "path" and names.get(param["name"]):
                    param["schema"] = {"type": "string", "enum": names[param["name"]]}
            responses = op.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's guess; the real answers follow
            ok = responses.setdefault("200", {"description": "Successful Response"})
            for suffix, content in _OK_CONTENT.items():
                if path.endswith(suffix) and method == "post":
                    ok["content"] = copy.deepcopy(content)
            for status in sorted(_statuses(spec, method, path)):
                responses[str(status)] = _error_response(status, path)
            if path.startswith("/v1/") and method == "post":
                body = op["requestBody"]["content"]["application/json"]["schema"]
                _constrain(body, "model", enum=[spec.name])
                for field in TOKEN_FIELDS if max_tokens is not None else ():
                    _constrain(body, field, maximum=max_tokens)
    return doc


def install(app: FastAPI, spec: GraphSpec) -> Callable[[], dict[str, Any]]:
    """Serve :func:`complete`'s document of ``app`` at its ``openapi.json`` (and ``/docs``),
    built on first use; returns the function that builds it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(
                FastAPI.openapi(app), spec, max_tokens=spec.limits.max_tokens
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
    return openapi
