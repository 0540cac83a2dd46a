"""Stream pacing: read the engine's output stream at most every ``engine.stream_batch_ms``, so
a chunk carries every engine step since the last one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Any


def _never(item: Any) -> bool:
    return False


async def paced(
    items: AsyncGenerator[Any, None],
    interval_s: float,
    last: Callable[[Any], bool] = _never,
) -> AsyncGenerator[Any, None]:
    """``items``, pulled at most once every ``interval_s`` (the first at once).

    vLLM's engine merges the deltas of a request that its consumer has not taken yet, so pulling
    the engine's stream this way sends fewer, larger chunks when the engine is fast (every chunk
    costs a hop between processes on its way to the client) and every token as it comes when it
    is slow. After an item for which ``last(item)`` is true (vLLM: ``output.finished``) the
    stream ends at once, with no wait: the request's end (usage, ``[DONE]``) and so a client's
    next request are never held back by the pace. Closing this stream closes ``items`` (the
    engine then aborts the request).
    """
    loop = asyncio.get_running_loop()
    async with contextlib.aclosing(items) as source:
        async for item in source:
            pulled = loop.time()
            yield item
            if last(item):
                return
            if interval_s > 0:  # 0: no pacing, every step as it comes
                await asyncio.sleep(max(0.0, pulled + interval_s - loop.time()))
