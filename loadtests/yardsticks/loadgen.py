"""Tiny closed-loop HTTP load generator: N concurrent clients for T seconds; prints JSON stats.

Vendored from ``shared/bench/loadgen.py``: the same request loop (one ``httpx.AsyncClient``,
timeout 30 s, ``max_connections=conc``, every response timed and non-200s counted as errors) and
the same nearest-rank percentiles; reformatted and typed.

    python -m yardsticks.loadgen URL CONCURRENCY SECONDS [JSON_BODY]   # from loadtests/
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx


async def run(url: str, body: Any, conc: int, seconds: float) -> dict[str, Any]:
    lat: list[float] = []
    errs = 0
    stop = time.perf_counter() + seconds
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=conc)) as c:

        async def worker() -> None:
            nonlocal errs
            while time.perf_counter() < stop:
                t = time.perf_counter()
                try:
                    r = await c.post(url, json=body)
                    if r.status_code != 200:
                        errs += 1
                except Exception:
                    errs += 1
                lat.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(conc)])
        el = time.perf_counter() - t0
    lat.sort()

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

    return {
        "n": len(lat),
        "errors": errs,
        "rps": len(lat) / el,
        "p50_ms": q(0.5),
        "p95_ms": q(0.95),
        "p99_ms": q(0.99),
    }


if __name__ == "__main__":
    url, conc, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    body = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {"x": 1}
    print(json.dumps(asyncio.run(run(url, body, conc, secs))))
