"""How many requests ``nodes.batching.Batcher`` puts in a batch, without Ray or HTTP.

32 closed-loop callers send one row each to a batcher in front of a fake model (asyncio sleep of
``base + per_row x rows`` ms, by default the cost curve of bench_batching's MLP). Between
requests each caller pauses a random 0..jitter ms, standing in for the spread in arrival times
that the network, HAProxy, the ingress and Ray's routers add. Compared:

- ``serve.batch`` used directly (a method decorated like ``Batcher._batched``);
- the framework's ``nodes.batching.Batcher`` as it is in this checkout;
- a reference batcher that forms the next batch when the model becomes free, from everything
  queued by then (waiting up to max_wait_ms only when fewer than max_batch_size are queued).

With no jitter the callers arrive in lockstep and every batcher forms full batches; with
arrivals spread over more than ``max_wait_ms``, bare ``serve.batch`` keeps closing a batch every
``max_wait_ms`` while the previous one runs, so batches stay at 1-3 requests and queue behind
each other.

    python loadtests/repro_batch_formation.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

Payload = dict[str, Any]


class BareServeBatch:
    """``serve.batch`` on a method, nothing else (what ``Batcher`` wrapped at first)."""

    def __init__(
        self,
        max_batch_size: int,
        max_wait_ms: float,
        infer: Callable[[Payload], Awaitable[Payload]],
    ):
        from ray import serve

        self.infer = infer
        self.sizes: Counter[int] = Counter()
        # Decorated per instance, so each has its own queue and settings.
        self._batched = serve.batch(
            max_batch_size=max_batch_size, batch_wait_timeout_s=max_wait_ms / 1e3
        )(self._run)

    async def __call__(self, payload: Payload) -> Payload:
        result: Payload = await self._batched(payload)
        return result

    async def _run(self, payloads: list[Payload]) -> list[Payload]:
        from nodes.batching import merge, split

        self.sizes[len(payloads)] += 1
        merged, sizes = merge(payloads)
        return split(await self.infer(merged), sizes)


class DrainWhenFree:
    """Reference batcher: the next batch is formed when the model is free."""

    def __init__(
        self,
        max_batch_size: int,
        max_wait_ms: float,
        infer: Callable[[Payload], Awaitable[Payload]],
    ):
        self.max_batch_size, self.max_wait_s, self.infer = max_batch_size, max_wait_ms / 1e3, infer
        self.queue: asyncio.Queue[tuple[Payload, asyncio.Future[Payload]]] = asyncio.Queue()
        self.sizes: Counter[int] = Counter()
        self.task: asyncio.Task[None] | None = None

    async def __call__(self, payload: Payload) -> Payload:
        if self.task is None:
            self.task = asyncio.create_task(self._loop())
        future: asyncio.Future[Payload] = asyncio.get_running_loop().create_future()
        await self.queue.put((payload, future))
        return await future

    async def _loop(self) -> None:
        from nodes.batching import merge, split

        while True:
            items = [await self.queue.get()]
            deadline = time.monotonic() + self.max_wait_s
            while len(items) < self.max_batch_size:
                if not self.queue.empty():
                    items.append(self.queue.get_nowait())
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
            self.sizes[len(items)] += 1
            merged, sizes = merge([p for p, _ in items])
            for (_, future), out in zip(items, split(await self.infer(merged), sizes)):
                future.set_result(out)

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


async def closed_loop(batcher: Any, callers: int, seconds: float, jitter_ms: float) -> float:
    stop = time.perf_counter() + seconds
    done = 0
    rng = random.Random(0)

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await batcher({"x": np.zeros((1, 4), np.float32)})
            done += 1
            await asyncio.sleep(rng.uniform(0, jitter_ms / 1e3))

    await asyncio.gather(*(caller() for _ in range(callers)))
    return done / seconds


async def compare(args: argparse.Namespace) -> list[dict[str, Any]]:
    import ray.serve.batching as ray_batching

    from graphs.spec import BatchingSpec
    from nodes.batching import Batcher

    # serve.batch checks max_ongoing_requests through the replica context; there is none here.
    ray_batching._BatchQueue._warn_if_max_batch_size_exceeds_max_ongoing_requests = lambda self: (
        None
    )

    async def infer(payload: Payload) -> Payload:
        await asyncio.sleep((args.base_ms + args.per_row_ms * len(payload["x"])) / 1e3)
        return {"y": payload["x"]}

    spec = BatchingSpec(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms)
    rows = []
    for jitter in args.jitter_ms:
        for name in ("bare serve.batch", "nodes.batching.Batcher", "drain-when-free"):
            b: Any
            if name == "nodes.batching.Batcher":
                b = Batcher(spec, infer)
            elif name == "bare serve.batch":
                b = BareServeBatch(spec.max_batch_size, spec.max_wait_ms, infer)
            else:
                b = DrainWhenFree(spec.max_batch_size, spec.max_wait_ms, infer)
            rps = await closed_loop(b, args.callers, args.seconds, jitter)
            sizes: Counter[int] = b.sizes
            if isinstance(b, DrainWhenFree):
                b.stop()
            batches = sum(sizes.values())
            rows.append(
                {
                    "jitter_ms": jitter,
                    "batcher": name,
                    "rps": round(rps, 1),
                    "mean_batch": round(sum(k * v for k, v in sizes.items()) / batches, 2),
                    "commonest": ", ".join(f"{k}x{v}" for k, v in sizes.most_common(3)),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--base-ms", type=float, default=14.0, help="model time at 0 rows")
    parser.add_argument("--per-row-ms", type=float, default=1.3, help="model time per row")
    parser.add_argument(
        "--jitter-ms",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[0.0, 5.0, 20.0, 50.0],
    )
    args = parser.parse_args(argv)
    rows = asyncio.run(compare(args))
    print(
        f"callers={args.callers}, max_batch_size={args.max_batch_size}, "
        f"max_wait_ms={args.max_wait_ms:g}, model {args.base_ms:g} ms + "
        f"{args.per_row_ms:g} ms/row\n"
    )
    print("| jitter ms | batcher | req/s | mean batch | commonest sizes |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['jitter_ms']:g} | {r['batcher']} | {r['rps']:.0f} | {r['mean_batch']} | "
            f"{r['commonest']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
