"""Model node: loads its runtime once per replica and serves requests, batched or one by one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nodes.batching import Batcher
from nodes.calls import Payload, Result
from nodes.imports import resolve
from nodes.resilience import DEADLINE
from nodes.runtimes import LOADERS
from nodes.spec import ModelNode


class ModelRunner:
    """Runs a model node; inference runs in a worker thread so the replica's loop stays free."""

    def __init__(self, spec: ModelNode, on_batch: Callable[[int, int], None] | None = None):
        self.spec = spec
        self._infer, self.info = LOADERS[spec.runtime](spec)
        self._post = resolve(spec.postprocess) if spec.postprocess is not None else None
        self.batcher = Batcher(spec.batching, self._run, on_batch) if spec.batching else None

    async def _run(self, payload: Payload) -> Payload:
        return await asyncio.to_thread(self._infer, payload)

    async def __call__(self, payload: Payload, ctx: dict[str, Any]) -> Result:
        if self.batcher is not None:
            out = await self.batcher(payload, ctx.get(DEADLINE), self.spec.name)
        else:
            out = await self._run(payload)
        if self._post is not None:
            out = self._post(out)
        return out, [], {}

    def stats(self) -> dict[str, Any]:
        """Where the model runs, and batching statistics when batching is on."""
        return {**self.info, **(self.batcher.stats() if self.batcher else {})}
