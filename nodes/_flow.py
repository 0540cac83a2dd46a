"""How nodes call each other: every call returns ``(payload, served_by, notes)``.

``served_by`` lists the node names that produced the result, in call order; ``notes`` carries
per-node remarks the ingress returns (e.g. which ensemble members were left out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Payload = dict[str, Any]
Result = tuple[Payload, list[str], dict[str, Any]]


async def run_chain(
    handles: Mapping[str, Any], names: Sequence[str], payload: Payload, ctx: dict[str, Any]
) -> Result:
    """Call ``names`` in turn through their handles, each output feeding the next node."""
    served: list[str] = []
    notes: dict[str, Any] = {}
    for name in names:
        payload, by, more = await handles[name].remote(payload, ctx)
        served.extend(by)
        if more:
            notes.update(more)
    return payload, served, notes
