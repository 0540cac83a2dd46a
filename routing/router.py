"""Router node: picks one arm per request with its policy and returns that arm's result."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from graphs.spec import RouterNode, refs
from nodes._flow import Payload, Result, run_chain
from routing.weighted import WeightedRandom


class Router:
    """Runs a router node over handles to its arms' nodes."""

    def __init__(self, spec: RouterNode, handles: Mapping[str, Any]):
        self.spec = spec
        self._handles = handles
        self._chains = [refs(arm.target) for arm in spec.arms]
        self.policy = WeightedRandom([arm.weight for arm in spec.arms], random.Random(spec.seed))

    async def __call__(self, payload: Payload, ctx: dict[str, Any]) -> Result:
        return await run_chain(self._handles, self._chains[self.policy.choose()], payload, ctx)

    def state(self) -> dict[str, Any]:
        """Live weights, for ``GET /<graph>/graph``."""
        return {
            "policy": "weighted",
            "arms": ["->".join(c) for c in self._chains],
            "weights": self.policy.weights,
        }
