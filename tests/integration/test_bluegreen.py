"""Blue/green cutover on a real cluster, across two router replicas: no request sent after the
switch is acknowledged is served by the old arm, and the rollback is the same instant cut; then
router state that survives a truncated snapshot and a killed state actor, and says so."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import ray

from graphs import Graph, tensor
from routing.store import NAMESPACE, actor_name
from tests.support import CONTROL_HEADERS, wait_for

X = [tensor("x", "FP32", [-1])]
SWITCHABLE = "graphs.examples.faults:Switchable"


def _arm(g: Graph, name: str, control: Path) -> Any:
    return g.model(
        name,
        runtime="python",
        model_class=SWITCHABLE,
        init_kwargs={"control_path": str(control), "tag": name},
        num_cpus=0,
    )


async def _load_during(url: str, action: Callable[[], Any]) -> tuple[list[Any], Any]:
    """8 clients posting back to back while ``action`` runs (in a thread) and 1 s after it;
    every answer as ``(sent, received, arm)``, and what ``action`` returned."""
    done = asyncio.Event()
    seen: list[tuple[float, float, str]] = []

    async def client(http: httpx.AsyncClient) -> None:
        while not done.is_set():
            sent = time.time()
            r = await http.post(f"{url}/predict", json={"inputs": {"x": [1.0]}})
            assert r.status_code == 200, r.text
            seen.append((sent, time.time(), r.json()["outputs"]["served"][0]))

    async with httpx.AsyncClient(timeout=30) as http:
        clients = [asyncio.ensure_future(client(http)) for _ in range(8)]
        await asyncio.sleep(0.5)
        result = await asyncio.to_thread(action)
        await asyncio.sleep(1.0)
        done.set()
        await asyncio.gather(*clients)
    return seen, result


def _cut(seen: list[Any], reply: dict[str, Any], old: str, new: str) -> None:
    """The switch in ``reply`` was one instant cut from ``old`` to ``new``."""
    at, skew, acked = reply["switch"]["at"], 0.5, reply["acknowledged_at"]
    assert acked >= at + skew
    after = {arm for sent, _, arm in seen if sent >= acked}
    before = {arm for _, received, arm in seen if received < at - skew}
    assert after == {new}, (after, reply)  # nothing sent after the acknowledgement on old
    assert before == {old}, (before, reply)  # and nothing answered by new before the instant


def test_blue_green_switch_and_rollback_are_one_instant_cut_across_replicas(
    tmp_path: Path, state_dir: str, deploy: Callable[..., str], http: httpx.Client
) -> None:
    g = Graph("bluegreen", inputs=X)
    blue, green = _arm(g, "blue", tmp_path / "b"), _arm(g, "green", tmp_path / "g")
    g.entry = g.router(
        "cut",
        [blue, green],
        blue_green={"active": "blue", "lease_s": 2.0, "clock_skew_s": 0.5},
        state={"dir": state_dir, "sync_interval_s": 0.5},
        num_replicas=2,
        num_cpus=0,
    )
    url = deploy(g.build(), "bluegreen")
    wait_for(lambda: http.post(f"{url}/predict", json={"inputs": {"x": [1.0]}}).status_code == 200)

    def control(action: str, body: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(
            f"{url}/routers/cut/{action}", json=body, headers=CONTROL_HEADERS, timeout=30
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    seen, reply = asyncio.run(_load_during(url, lambda: control("switch", {"to": "green"})))
    _cut(seen, reply, "blue", "green")
    assert len(reply["confirmed"]) == 2, reply  # both router replicas saw it before the instant
    seen, reply = asyncio.run(_load_during(url, lambda: control("rollback", {})))
    _cut(seen, reply, "green", "blue")

    # Durable state: the snapshot truncated, the state actor killed: it restarts, recovers from
    # the previous snapshot and the log, and /graph says so; the figures survive.
    def requests() -> dict[str, int]:
        state = next(n for n in http.get(f"{url}/graph").json()["nodes"] if n["name"] == "cut")
        return dict(state["state"]["requests"])

    before = wait_for(lambda: (lambda r: r if sum(r.values()) > 0 else None)(requests()))
    actor = ray.get_actor(actor_name("bluegreen", "cut"), namespace=NAMESPACE)
    ray.get(actor.flush.remote())
    snapshot = os.path.join(state_dir, "bluegreen", "cut.json")
    with open(snapshot, "r+") as f:
        f.truncate(os.path.getsize(snapshot) // 2)
    ray.kill(actor, no_restart=False)

    def recovered() -> dict[str, Any] | None:
        nodes = http.get(f"{url}/graph").json()["nodes"]
        state = next(n for n in nodes if n["name"] == "cut")["state"]
        return state if state.get("recovery") else None

    state = wait_for(recovered, 60, "the state actor to recover")
    assert "snapshot" in state["recovery"], state["recovery"]
    assert sum(state["requests"].values()) >= sum(before.values()), (state, before)
    assert state["blue_green"]["active"] == "blue", state["blue_green"]
