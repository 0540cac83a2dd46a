"""nodes.llm.pacing: the engine's stream read at a steady pace."""

from __future__ import annotations

import asyncio
from typing import Any

from nodes.llm.pacing import paced


class Engine:
    """A stand-in for vLLM's per-request output stream: steps every ``step_s``; steps the
    consumer has not taken yet are merged, as vLLM's RequestOutputCollector merges deltas."""

    def __init__(self, tokens: int, step_s: float):
        self.tokens, self.step_s = tokens, step_s
        self.closed = False

    async def stream(self) -> Any:
        made: list[int] = []
        ready = asyncio.Event()

        async def produce() -> None:
            for token in range(self.tokens):
                await asyncio.sleep(self.step_s)
                made.append(token)
                ready.set()

        producer = asyncio.create_task(produce())
        try:
            taken = 0
            while taken < self.tokens:
                await ready.wait()
                ready.clear()
                batch, made[:] = list(made), []  # everything made since the last pull
                taken += len(batch)
                yield batch
        finally:
            producer.cancel()
            self.closed = True


def pull(engine: Engine, interval_s: float) -> list[list[int]]:
    async def run() -> list[list[int]]:
        return [chunk async for chunk in paced(engine.stream(), interval_s)]

    return asyncio.run(run())


def test_a_fast_engine_streams_in_fewer_larger_chunks() -> None:
    chunks = pull(Engine(tokens=60, step_s=0.002), interval_s=0.03)
    assert [t for c in chunks for t in c] == list(range(60))  # nothing lost, in order
    assert len(chunks[0]) <= 2  # the first token goes out at once
    assert len(chunks) < 20


def test_a_slow_engine_streams_token_by_token() -> None:
    chunks = pull(Engine(tokens=6, step_s=0.03), interval_s=0.01)
    assert chunks == [[i] for i in range(6)]
    assert len(pull(Engine(tokens=30, step_s=0.001), interval_s=0)) >= 10  # 0: no pacing


def test_closing_the_stream_closes_the_engine_stream() -> None:
    engine = Engine(tokens=100, step_s=0.005)

    async def run() -> None:
        stream = paced(engine.stream(), 0.01)
        await stream.__anext__()
        await stream.aclose()

    asyncio.run(run())
    assert engine.closed


def test_the_stream_ends_at_once_after_its_last_item() -> None:
    """No pause after the final output: the pace must not delay a request's end (usage,
    ``[DONE]``), which in a closed loop delays the client's next request."""

    async def items() -> Any:
        for i in range(3):
            yield i

    async def run() -> tuple[list[int], float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        got = [i async for i in paced(items(), 0.5, last=lambda i: i == 2)]
        return got, loop.time() - t0

    got, took = asyncio.run(run())
    assert got == [0, 1, 2]
    assert 0.9 <= took < 1.4  # two paces (after items 0 and 1), none after the last
