"""Admission control on a live cluster: per-tenant limits shared by two ingress replicas keep a
flooding tenant from starving a polite one, and the ingress's in-flight cap answers 503."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
from ray import serve

from graphs import Graph, tensor
from routing.quota_client import chunk_size
from routing.quota_ledger import ledger_actor_name
from tests.integration import helpers

X = [tensor("x", "FP32", [-1, 4])]
ROW = {"inputs": {"x": [[1.0, 2.0, 3.0, 4.0]]}}
RATE, BURST, CONCURRENT = 20.0, 20, 4
SECONDS = 6.0


async def _flood(url: str, tenant: str, workers: int, until: float) -> list[httpx.Response]:
    """``workers`` clients posting back to back as ``tenant`` until ``until``."""
    out: list[httpx.Response] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < until:
            r = await client.post(f"{url}/predict", json=ROW, headers={"X-Tenant": tenant})
            out.append(r)

    limits = httpx.Limits(max_connections=workers)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(workers)))
    return out


async def _polite(url: str, tenant: str, every_s: float, until: float) -> list[httpx.Response]:
    """One request as ``tenant`` every ``every_s`` seconds (a modest, steady client)."""
    out: list[httpx.Response] = []
    async with httpx.AsyncClient(timeout=30) as client:
        while time.monotonic() < until:
            started = time.monotonic()
            out.append(await client.post(f"{url}/predict", json=ROW, headers={"X-Tenant": tenant}))
            await asyncio.sleep(max(0.0, every_s - (time.monotonic() - started)))
    return out


def test_a_flooding_tenant_cannot_starve_a_polite_one(
    deploy: Callable[..., str], http: httpx.Client
) -> None:
    limits: dict[str, Any] = {
        "tenant": {"header": "X-Tenant"},
        "tenants": {
            "flood": {"requests_per_s": RATE, "burst": BURST, "max_concurrent": CONCURRENT},
            "polite": {"requests_per_s": RATE, "burst": BURST, "max_concurrent": CONCURRENT},
        },
        "unknown_tenant": "reject",
    }
    g = Graph("fair", inputs=X, limits=limits, ingress={"num_replicas": 2, "num_cpus": 0})
    g.entry = g.model(
        "slow",
        runtime="python",
        model_class=helpers.Sleepy,
        init_kwargs={"seconds": 0.02},
        num_cpus=0,
        max_ongoing_requests=64,
    )
    url = deploy(g.build(), "fair")

    async def both() -> tuple[list[httpx.Response], list[httpx.Response]]:
        until = time.monotonic() + SECONDS
        flood, polite = await asyncio.gather(
            _flood(url, "flood", 48, until), _polite(url, "polite", 0.2, until)
        )
        return flood, polite

    flood, polite = asyncio.run(both())
    flood_codes = Counter(r.status_code for r in flood)
    polite_codes = Counter(r.status_code for r in polite)
    # The polite tenant (5 requests/s, under its 20/s) is never limited and never fails...
    not_ok = [(r.status_code, r.text) for r in polite if r.status_code != 200]
    assert not not_ok, not_ok
    # ...and keeps at least half its pace, on 2 cores that also run the 48 flooding clients.
    assert len(polite) >= SECONDS * 5 * 0.5, polite_codes
    # The flooder is held to its own limits, with 429s that say when to come back.
    assert flood_codes[429] > 0 and set(flood_codes) <= {200, 429}, flood_codes
    refused = next(r for r in flood if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    body = refused.json()
    assert body["error"] == "RateLimitedError" and body["tenant"] == "flood"
    assert body["limit"]["requests_per_s"] == RATE
    # Shared by both replicas: the rate, the burst, one lease and one credit per replica at most.
    lease = chunk_size(g.spec().limits.tenants["flood"], g.spec().limits.lease_s)
    assert flood_codes[200] <= BURST + RATE * (SECONDS + 1) + 2 * (lease + 1), flood_codes
    # One ledger actor holds the shared budget.
    import ray

    assert ray.get_actor(ledger_actor_name("fair"), namespace="servegraph") is not None
    # GETs are never limited, even for a tenant over its budget.
    assert http.get(f"{url}/v2/health/live", headers={"X-Tenant": "flood"}).status_code == 200
    assert serve.status().applications["fair"].status == "RUNNING"


def test_over_the_in_flight_cap_is_a_json_503_before_any_work(
    deploy: Callable[..., str],
) -> None:
    g = Graph(
        "capped",
        inputs=X,
        limits={"max_in_flight": 2, "retry_after_s": 2},
        ingress={"max_ongoing_requests": 16},
    )
    g.entry = g.model(
        "slow",
        runtime="python",
        model_class=helpers.Sleepy,
        init_kwargs={"seconds": 0.5},
        num_cpus=0,
        max_ongoing_requests=16,
    )
    url = deploy(g.build(), "capped")

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(client.post(f"{url}/predict", json=ROW) for _ in range(8))
            )

    responses = asyncio.run(fire())
    codes = Counter(r.status_code for r in responses)
    assert codes[200] >= 2 and codes[503] >= 1 and set(codes) <= {200, 503}, codes
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["retry-after"] == "2"
    assert "max_in_flight=2" in rejected.json()["detail"]
