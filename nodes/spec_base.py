"""The primitives every spec model is made of: the frozen base model, node names and references.

Kept apart from :mod:`nodes.spec` so that the spec modules of each concept (node kinds, engine
settings, call policies) share them without importing each other.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainValidator, WithJsonSchema

__all__ = ["NAME_PATTERN", "Frozen", "Ref", "refs"]


#: A reference to what a router arm or ensemble member runs: one node name, or a chain of names
#: called in turn (each node's output is the next one's input).
def _check_ref(value: Any) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"must be a node name or a non-empty list of node names, got {value!r}")


Ref = Annotated[
    str | list[str],
    PlainValidator(_check_ref),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ]
        }
    ),
]

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"


class Frozen(BaseModel):
    """Base of every spec model: immutable, unknown keys refused, a readable repr."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    def __repr__(self) -> str:
        # Show what the object was built from, without the defaults, so reprs stay readable.
        fields = self.model_dump(exclude_defaults=True)
        inner = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        return f"{type(self).__name__}({inner})"


def refs(ref: Ref) -> list[str]:
    """The node names a reference calls, in call order."""
    return [ref] if isinstance(ref, str) else list(ref)
