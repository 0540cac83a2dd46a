"""Dynamic batching: merge concurrent payloads along the first axis, run once, split back."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import serve

from nodes.calls import Payload
from nodes.errors import DeadlineExceededError, RequestValidationError
from nodes.spec import BatchingSpec


@dataclass(frozen=True)
class _Failed:
    """One request's failure inside a batch, handed back to that request's caller only."""

    error: BaseException


def merge(payloads: list[Payload]) -> tuple[Payload, list[int]]:
    """Concatenate each key's arrays along axis 0; returns the merged payload and row counts."""
    keys = payloads[0].keys()
    sizes = [len(np.asarray(next(iter(p.values())))) for p in payloads]
    merged = {}
    for key in keys:
        parts = [np.asarray(p[key]) for p in payloads]
        try:
            merged[key] = np.concatenate(parts, axis=0)
        except ValueError as exc:
            raise RequestValidationError(
                f"inputs.{key}", f"cannot batch tensors of shapes {[a.shape for a in parts]}: {exc}"
            ) from None
    return merged, sizes


def split(outputs: Payload, sizes: list[int]) -> list[Payload]:
    """Cut each output back into per-request pieces by row counts."""
    bounds = np.cumsum([0, *sizes])
    return [
        {k: np.asarray(v)[bounds[i] : bounds[i + 1]] for k, v in outputs.items()}
        for i in range(len(sizes))
    ]


class Batcher:
    """Wraps a whole-payload inference function with ``serve.batch``.

    Payloads that arrive concurrently are merged into one call of ``infer`` (at most
    ``max_batch_size`` requests, waiting at most ``max_wait_ms``); ``sizes`` counts batches by
    how many requests they held.

    ``serve.batch`` closes a batch every ``max_wait_ms`` even while the previous one still runs,
    so under load it queues many small batches behind each other. Requests therefore enter it
    only while the model is idle: those that arrive during a batch wait and then form the next
    batch together (continuous batching), which is what makes batches fill up.

    A request alone at an idle model runs at once, as a batch of one: nothing else is on its
    way to share its batch, so waiting ``max_wait_ms`` for company would only add latency
    (at concurrency 1, every call would pay the whole wait).

    One bad request fails only itself: a batch that cannot be merged (shapes that do not
    concatenate) or whose inference fails runs again request by request, and each request gets
    its own answer or error. A request whose deadline passed while it waited is dropped before
    inference (504).
    """

    def __init__(
        self,
        spec: BatchingSpec,
        infer: Callable[[Payload], Awaitable[Payload]],
        on_batch: Callable[[int, int], None] | None = None,
    ):
        self._infer = infer
        self._max = spec.max_batch_size
        self._on_batch = on_batch
        self.sizes: Counter[int] = Counter()
        self._idle = asyncio.Event()
        self._idle.set()
        self._inside = 0  # calls between entering __call__ and getting their answer
        self._running = 0  # of which in the batch the model is running now
        # Decorated per instance: serve.batch on a method keeps one queue per class, which
        # two Batchers in one process (local testing mode) would share.
        self._batched = serve.batch(
            max_batch_size=spec.max_batch_size, batch_wait_timeout_s=spec.max_wait_ms / 1000.0
        )(self._run_batch)

    async def __call__(
        self, payload: Payload, deadline: float | None = None, node: str | None = None
    ) -> Payload:
        """``payload``'s output, inferred in a batch with the requests beside it; ``deadline``
        (wall-clock seconds) drops it unrun once passed (504 naming ``node``)."""
        self._inside += 1
        try:
            await self._idle.wait()
            item = (payload, deadline, node)
            if self._inside == 1:  # alone, and the model is idle: no one to wait for
                out = (await self._run_batch([item]))[0]
            else:
                out = await self._batched(item)
        finally:
            self._inside -= 1
        if isinstance(out, _Failed):
            raise out.error
        return out

    async def _run_batch(
        self, items: list[tuple[Payload, float | None, str | None]]
    ) -> list[Payload | _Failed]:
        now = time.time()
        out: list[Payload | _Failed] = [
            _Failed(DeadlineExceededError(node)) for _, _, node in items
        ]
        live = [i for i, (_, deadline, _) in enumerate(items) if deadline is None or deadline > now]
        if not live:
            return out
        self.sizes[len(live)] += 1
        if self._on_batch is not None:
            self._on_batch(len(live), self._max)
        self._idle.clear()
        self._running = len(live)
        try:
            payloads = [items[i][0] for i in live]
            if len(payloads) > 1:
                try:
                    merged, sizes = merge(payloads)
                    for i, result in zip(live, split(await self._infer(merged), sizes)):
                        out[i] = result
                    return out
                except Exception:
                    pass  # one request broke the batch: find out which, below
            for i in live:
                try:
                    out[i] = await self._infer(items[i][0])
                except Exception as exc:
                    out[i] = _Failed(exc)
            return out
        finally:
            self._running = 0
            self._idle.set()

    @property
    def waiting(self) -> int:
        """Calls waiting for the next batch (not in the batch the model is running)."""
        return max(0, self._inside - self._running)

    def stats(self) -> dict[str, Any]:
        """Batches served so far by size, and the largest size seen."""
        return {
            "batches": sum(self.sizes.values()),
            "max_batch_size_seen": max(self.sizes, default=0),
            "batch_sizes": {str(k): v for k, v in sorted(self.sizes.items())},
        }
