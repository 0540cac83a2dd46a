"""OpenAPI request bodies for routes that read their body themselves."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


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
