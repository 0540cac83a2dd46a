"""The worker: the graphs deployed in one cluster, measured over HTTP and through the handle."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from typing import Any

import _harness as h
import numpy as np

from .model import IN_DIM, OUT_DIM

#: Requests an unbatched model node takes at once: Ray Serve's default max_ongoing_requests.
UNBATCHED_LIMIT = 5


def graph_dict(
    name: str,
    model_path: str,
    args: dict[str, Any],
    *,
    batched: bool,
    ingress_max_ongoing: int | None = None,
) -> dict[str, Any]:
    node: dict[str, Any] = {
        "name": "mlp",
        "kind": "model",
        "runtime": "onnx",
        "model_path": model_path,
        "num_cpus": args["model_cpus"],
    }
    if batched:
        node["batching"] = {
            "max_batch_size": args["max_batch_size"],
            "max_wait_ms": args["max_wait_ms"],
        }
    ingress: dict[str, Any] = {"num_cpus": 0}
    if ingress_max_ongoing is not None:
        ingress["max_ongoing_requests"] = ingress_max_ongoing
    return {
        "name": name,
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, IN_DIM]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, OUT_DIM]}],
        "entry": "mlp",
        "nodes": [node],
        "ingress": ingress,
    }


def ceiling_dict() -> dict[str, Any]:
    return {
        "name": "http_ceiling",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, IN_DIM]}],
        "entry": "identity",
        "nodes": [
            {
                "name": "identity",
                "kind": "preprocess",
                "num_cpus": 0,
                "function": "graphs.examples.passthrough:identity",
            }
        ],
        "ingress": {"num_cpus": 0},
    }


async def node_stats(app: str) -> dict[str, Any]:
    """The model node's ``stats()``. Awaited: with ``RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0`` in
    the driver's environment, ``handle.stats.remote().result()`` raises outside an event loop."""
    from ray import serve

    stats: dict[str, Any] = await serve.get_deployment_handle("mlp", app_name=app).stats.remote()
    return stats


def batch_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Batches formed between two ``stats`` snapshots."""
    b0 = Counter({int(k): v for k, v in before.get("batch_sizes", {}).items()})
    b1 = Counter({int(k): v for k, v in after.get("batch_sizes", {}).items()})
    sizes = b1 - b0
    batches = sum(sizes.values())
    requests = sum(k * v for k, v in sizes.items())
    return {
        "batches": batches,
        "requests": requests,
        "mean_batch": round(requests / batches, 2) if batches else None,
        "max_batch": max(sizes, default=None),
        "sizes": {str(k): v for k, v in sorted(sizes.items())},
    }


async def handle_load(app: str, x: np.ndarray, concurrency: int, seconds: float) -> dict[str, Any]:
    """Closed loop on the model node's deployment handle, from the driver (no HTTP)."""
    from ray import serve

    handle = serve.get_deployment_handle("mlp", app_name=app)
    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def caller(i: int) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                out, _, _ = await handle.remote({"input": x}, {"request_id": f"bench-{i}"})
                if np.asarray(out["output"]).shape != (1, OUT_DIM):
                    errors += 1
            except Exception:  # count and keep going, as loadgen does
                errors += 1
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - t0
    lat.sort()

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {
        "n": len(lat),
        "errors": errors,
        "rps": len(lat) / elapsed,
        "p50_ms": q(0.5),
        "p95_ms": q(0.95),
        "p99_ms": q(0.99),
    }


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    from ray import serve

    import graphs

    apps: list[str] = spec["apps"]
    row = np.random.default_rng(2).random((1, IN_DIM), dtype=np.float32)
    body = {"inputs": {"input": row.tolist()}}
    with h.ray_cluster(num_cpus=4):
        for app in apps:
            if app == "http_ceiling":
                g = ceiling_dict()
            else:
                g = graph_dict(
                    app,
                    spec["model_path"],
                    spec,
                    batched="unbatched" not in app,
                    ingress_max_ongoing=64 if app.endswith("_wide") else None,
                )
            serve.run(graphs.compile_graph(graphs.parse_graph(g)), name=app, route_prefix=f"/{app}")
            answer = h.wait_ready(f"{h.BASE_URL}/{app}/predict", body, timeout_s=120)
            key, shape = (
                ("input", (1, IN_DIM)) if app == "http_ceiling" else ("output", (1, OUT_DIM))
            )
            if np.asarray(answer["outputs"][key]).shape != shape:
                raise RuntimeError(f"{app}: unexpected answer {answer}")
        # One event loop for every handle call (see node_stats), left open: the handles'
        # routers still hold it when Serve shuts down.
        loop = asyncio.new_event_loop()
        out = loop.run_until_complete(measure_all(spec, apps, body, row))
        out["machine"] = h.machine_info()
    return out


async def measure_all(
    spec: dict[str, Any], apps: list[str], body: dict[str, Any], row: np.ndarray
) -> dict[str, Any]:
    conc, seconds, rounds = spec["concurrency"], spec["seconds"], spec["rounds"]
    # (label, app, concurrency): the unbatched app also at the concurrency its model node takes
    # at once (Ray's default max_ongoing_requests, 5), the fair unbatched baseline (see README).
    runs = [(a, a, conc) for a in apps]
    if "mlp_unbatched" in apps:
        runs.append((f"mlp_unbatched@c{UNBATCHED_LIMIT}", "mlp_unbatched", UNBATCHED_LIMIT))
    out: dict[str, Any] = {"http": {label: [] for label, _, _ in runs}, "handle": {}}
    urls = {a: f"{h.BASE_URL}/{a}/predict" for a in apps}
    for a in apps:
        await h.measure_async(urls[a], body, conc, spec["warmup"])
    for r in range(rounds):
        for label, a, c in runs if r % 2 == 0 else runs[::-1]:
            before = await node_stats(a) if a != "http_ceiling" else {}
            res = await h.measure_async(urls[a], body, c, seconds)
            if a != "http_ceiling":
                res["batching"] = batch_delta(before, await node_stats(a))
            res["round"] = r
            res["callers"] = c
            out["http"][label].append(res)
            print(
                f"[bench_batching] round {r} {label}: {res['rps']:.0f} rps, p50 "
                f"{res['p50_ms']:.1f} ms, errors {res['errors']}, batches "
                f"{res.get('batching', {}).get('sizes')}, other work "
                f"{res['cpu_cores_foreign']:.2f} cores",
                file=sys.stderr,
                flush=True,
            )
    if spec["handle"]:
        # (label, app, callers): the unbatched node also with as many callers as it takes
        # requests at once (Ray's default max_ongoing_requests, 5): with more, the callers'
        # routers back off (up to 0.5 s) while the replica is full and it idles.
        runs = [
            ("mlp_batched", "mlp_batched", conc),
            ("mlp_unbatched", "mlp_unbatched", conc),
            (f"mlp_unbatched@c{UNBATCHED_LIMIT}", "mlp_unbatched", UNBATCHED_LIMIT),
        ]
        out["handle"] = {label: [] for label, _, _ in runs}
        for _, a, c in runs:  # warm-up of the driver's handle routers
            await handle_load(a, row, c, 1.0)
        for r in range(rounds):
            for label, a, c in runs if r % 2 == 0 else runs[::-1]:
                before = await node_stats(a)
                with h.CpuWatch() as cpu:
                    res = await handle_load(a, row, c, seconds)
                res.update(cpu.result)
                res["batching"] = batch_delta(before, await node_stats(a))
                res["callers"] = c
                out["handle"][label].append(res)
                print(
                    f"[bench_batching] handle round {r} {label}: {res['rps']:.0f} rps, "
                    f"p50 {res['p50_ms']:.1f} ms, batches {res['batching']['sizes']}",
                    file=sys.stderr,
                    flush=True,
                )
    return out
