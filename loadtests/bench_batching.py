"""Dynamic batching: an ONNX model node's throughput at concurrency 32, batching on vs off.

Builds an MLP (64 -> hidden x layers -> 10; MatMul+Add+Relu, float32, symbolic batch dim,
fixed-seed weights) with ``onnx.helper`` into a temp dir, then, in one fresh cluster started
with ``graphs.cluster.RECOMMENDED_ENV``, deploys single-node graphs compiled with
``graphs.compile_graph(graphs.parse_graph(...))``:

- ``mlp_batched``: the model node with ``batching: {max_batch_size: 32, max_wait_ms: 5}``;
- ``mlp_unbatched``: the same node without batching;
- ``http_ceiling`` (unless ``--no-ceiling``): one identity preprocess node, the same request:
  what the HTTP path (HAProxy, ingress, one hop) carries at this concurrency with no model;
- ``mlp_batched_wide`` (only with ``--wide``): batched, the ingress given
  ``max_ongoing_requests: 64``.

They are measured over HTTP (``POST /<name>/predict``) with ``loadgen.run`` at c=32 in
alternating rounds, and the unbatched app also at c=5 (its node's max_ongoing_requests: the
unbatched path at its best); the batch sizes formed come from the node's ``stats`` method.
Then (unless ``--no-handle``) the model node's deployment handle is called from the driver by
32 concurrent callers (and the unbatched one by 5): the batching gain without the HTTP path.
Target: batched/unbatched HTTP throughput at c=32 >= 2.5.

    python loadtests/bench_batching.py [--seconds 8] [--rounds 3] [--hidden 8192] [--layers 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from typing import Any

import _harness as h
import numpy as np

IN_DIM, OUT_DIM = 64, 10
#: Requests an unbatched model node takes at once: Ray Serve's default max_ongoing_requests.
UNBATCHED_LIMIT = 5


def build_mlp(path: str, hidden: int, layers: int, seed: int = 0) -> dict[str, Any]:
    """Write an MLP ``64 -> hidden (x layers) -> 10`` as ONNX; returns its description."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    dims = [IN_DIM, *([hidden] * layers), OUT_DIM]
    nodes, inits = [], []
    prev = "input"
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        bias = (rng.standard_normal(b) * 0.01).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
        last = i == len(dims) - 2
        added = "output" if last else f"add{i}"
        nodes += [
            helper.make_node("MatMul", [prev, f"w{i}"], [f"mm{i}"]),
            helper.make_node("Add", [f"mm{i}", f"b{i}"], [added]),
        ]
        if not last:
            nodes.append(helper.make_node("Relu", [added], [f"relu{i}"]))
            prev = f"relu{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", IN_DIM])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", OUT_DIM])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    params = sum(a * b + b for a, b in itertools.pairwise(dims))
    return {"dims": dims, "params": params, "mb": round(os.path.getsize(path) / 2**20, 1)}


def time_model(path: str, threads: int, batch_sizes: tuple[int, ...] = (1, 32)) -> dict[str, Any]:
    """Bare ONNX Runtime time per call (ms) at a few batch sizes: the most batching can buy."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    out = {}
    for bs in batch_sizes:
        x = np.random.default_rng(1).random((bs, IN_DIM), dtype=np.float32)
        for _ in range(3):
            session.run(None, {"input": x})
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 0.5 or n < 5:
            session.run(None, {"input": x})
            n += 1
        ms = (time.perf_counter() - t0) / n * 1000
        out[str(bs)] = {"ms_per_call": round(ms, 3), "rows_per_s": round(bs / ms * 1000, 1)}
    return out


# --- worker ------------------------------------------------------------------------------------


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


# --- parent ------------------------------------------------------------------------------------


def batch_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    sizes: Counter[int] = Counter()
    for r in rounds:
        sizes.update({int(k): v for k, v in r.get("batching", {}).get("sizes", {}).items()})
    batches = sum(sizes.values())
    requests = sum(k * v for k, v in sizes.items())
    common = ", ".join(f"{k}x{v}" for k, v in sizes.most_common(4))
    return {
        "batches": batches,
        "mean_batch": round(requests / batches, 2) if batches else None,
        "max_batch": max(sizes, default=None),
        "most_common": common,
    }


def render(args: argparse.Namespace, res: dict[str, Any]) -> str:
    from graphs.cluster import RECOMMENDED_ENV

    http, handle, checks = res["summary"]["http"], res["summary"]["handle"], res["checks"]
    lines = [
        "# Dynamic batching: ONNX model node, batching on vs off",
        "",
        f"Measured {h.now()} by `python loadtests/bench_batching.py "
        f"{' '.join(sys.argv[1:])}`".rstrip()
        + ".",
        "",
        f"Model: MLP {' → '.join(map(str, res['model']['dims']))} (MatMul+Add+Relu, float32, "
        f"{res['model']['params'] / 1e6:.1f} M parameters, {res['model']['mb']} MB), "
        f"`num_cpus: {args.model_cpus}` (so {args.model_cpus} ONNX Runtime intra-op thread), "
        f"ingress `num_cpus: 0`. Batching: `max_batch_size: {args.max_batch_size}, "
        f"max_wait_ms: {args.max_wait_ms:g}`. Cluster: `ray.init(num_cpus=4)` (logical) on "
        f"{res['machine']['cpus']} cores, with "
        + ", ".join(f"`{k}={v}`" for k, v in RECOMMENDED_ENV.items())
        + f". Load: c={args.concurrency}, {args.rounds} rounds of {args.seconds:g} s per "
        "app, apps alternating; medians over rounds.",
        "",
        "Bare ONNX Runtime, same thread count, no Serve: "
        + "; ".join(
            f"batch {bs}: {v['ms_per_call']:.2f} ms/call = {v['rows_per_s']:.0f} rows/s"
            for bs, v in res["model_timing"].items()
        )
        + f" (the most batching could buy: {res['model_gain']:.1f}x).",
        "",
        "## Targets",
        "",
        h.md_table(
            ["measure", "value", "target", "verdict"],
            [[c["ratio"], c["value"], c["target"], c["verdict"]] for c in checks],
        ),
        "",
        "## HTTP (`POST /<app>/predict`)",
        "",
    ]
    rows = []
    for app, s in http.items():
        b = s.get("batches") or {}
        rows.append(
            [
                app,
                s["callers"],
                s["rps"],
                s["p50_ms"],
                s["p95_ms"],
                s["errors"],
                b.get("mean_batch") or "-",
                b.get("max_batch") or "-",
                b.get("most_common", "-") or "-",
                s["cpu_cores_foreign"],
            ]
        )
    lines.append(
        h.md_table(
            [
                "app",
                "callers",
                "rps",
                "p50 ms",
                "p95 ms",
                "errors",
                "mean batch",
                "max batch",
                "commonest batch sizes (size x count)",
                "other cores",
            ],
            rows,
        )
    )
    if handle:
        lines += ["", "## Deployment handle, from the driver (no HTTP)", ""]
        rows = []
        for label, s in handle.items():
            b = s["batches"]
            rows.append(
                [
                    label,
                    s["callers"],
                    s["rps"],
                    s["p50_ms"],
                    s["p95_ms"],
                    s["errors"],
                    b["mean_batch"] or "-",
                    b["max_batch"] or "-",
                    b["most_common"] or "-",
                ]
            )
        lines.append(
            h.md_table(
                [
                    "app",
                    "callers",
                    "rps",
                    "p50 ms",
                    "p95 ms",
                    "errors",
                    "mean batch",
                    "max batch",
                    "commonest batch sizes",
                ],
                rows,
            )
        )
    lines += ["", "## Reading", ""] + [f"- {n}" for n in res["notes"]]
    lines += [
        "",
        "## Conditions",
        "",
        f"- {json.dumps(res['machine'])}.",
        "- `other cores`: CPU used, while measuring, by processes outside the benchmark's own "
        "process tree (other work sharing the machine).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=8192, help="hidden width (default 8192)")
    parser.add_argument("--layers", type=int, default=3, help="hidden layers (default 3)")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--model-cpus", type=int, default=1)
    parser.add_argument(
        "--no-handle", dest="handle", action="store_false", help="skip the handle-level measurement"
    )
    parser.add_argument(
        "--wide",
        action="store_true",
        help="also a batched app whose ingress takes 64 requests at once",
    )
    parser.add_argument(
        "--no-ceiling",
        dest="ceiling",
        action="store_false",
        help="skip the no-model app that shows what the HTTP path can carry",
    )
    parser.add_argument("--keep-logs", action="store_true")
    h.add_worker_args(parser)
    args = parser.parse_args(argv)
    if h.run_as_worker(args, worker):
        return 0

    from graphs.cluster import RECOMMENDED_ENV

    model_dir = tempfile.mkdtemp(prefix="lt_onnx_")
    try:
        model_path = os.path.join(model_dir, "mlp.onnx")
        model = build_mlp(model_path, args.hidden, args.layers)
        timing = time_model(model_path, args.model_cpus, (1, args.max_batch_size))
        apps = ["mlp_batched", "mlp_unbatched"]
        if args.wide:
            apps.append("mlp_batched_wide")
        if args.ceiling:
            apps.append("http_ceiling")
        spec = {
            "apps": apps,
            "model_path": model_path,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "max_batch_size": args.max_batch_size,
            "max_wait_ms": args.max_wait_ms,
            "model_cpus": args.model_cpus,
            "handle": args.handle,
        }
        n_meas = args.rounds * (len(apps) + (2 if args.handle else 0))
        raw = h.run_worker(
            os.path.abspath(__file__),
            spec,
            dict(RECOMMENDED_ENV),
            tag="batching",
            timeout_s=300 + n_meas * (args.seconds + 5),
            keep_logs=args.keep_logs,
        )
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)

    http = {
        a: {
            **h.summarize(rs),
            "batches": batch_summary(rs) if a != "http_ceiling" else None,
            "callers": rs[0]["callers"],
        }
        for a, rs in raw["http"].items()
    }
    handle = {
        a: {**h.summarize(rs), "batches": batch_summary(rs), "callers": rs[0]["callers"]}
        for a, rs in raw["handle"].items()
    }
    c, lim = args.concurrency, UNBATCHED_LIMIT
    unb, unb_lim = http["mlp_unbatched"]["rps"], http[f"mlp_unbatched@c{lim}"]["rps"]
    best_unb = max(unb, unb_lim)

    def check(name: str, value: float, target: str) -> dict[str, Any]:
        return {
            "ratio": name,
            "value": round(value, 2),
            "target": target,
            "verdict": h.verdict(value, 2.5, True),
        }

    bat = http["mlp_batched"]["rps"]
    checks = [
        check(f"HTTP rps batched / unbatched, both at c={c}", bat / unb, ">= 2.5"),
        check(
            f"HTTP rps batched (c={c}) / unbatched at its best (c={c} or c={lim})",
            bat / best_unb,
            ">= 2.5 (info)",
        ),
    ]
    if "mlp_batched_wide" in http:
        checks.append(
            check(
                f"HTTP rps batched with ingress max_ongoing_requests=64 (c={c}) / unbatched "
                "at its best",
                http["mlp_batched_wide"]["rps"] / best_unb,
                ">= 2.5 (info)",
            )
        )
    if handle:
        h_unb = max(handle["mlp_unbatched"]["rps"], handle[f"mlp_unbatched@c{lim}"]["rps"])
        checks.append(
            check(
                f"handle rps batched (c={c}) / unbatched at its best (c={c} or c={lim})",
                handle["mlp_batched"]["rps"] / h_unb,
                ">= 2.5 (info)",
            )
        )
    gain = timing[str(args.max_batch_size)]["rows_per_s"] / timing["1"]["rows_per_s"]
    notes = [
        f"Bare model: {timing['1']['rows_per_s']:.0f} rows/s at batch 1, "
        f"{timing[str(args.max_batch_size)]['rows_per_s']:.0f} at batch {args.max_batch_size}: "
        f"batching could buy up to {gain:.1f}x on this model."
    ]
    if unb_lim > 1.3 * unb:
        notes.append(
            f"The unbatched app carries {unb:.0f} rps at c={c} but {unb_lim:.0f} rps at "
            f"c={lim}: with more requests than its model node takes at once (Ray's default "
            f"max_ongoing_requests, {lim}), the callers' routers back off (25 ms doubling to "
            "0.5 s) while the replica is full, and the replica idles. The c="
            f"{c} ratio ({bat / unb:.2f}x) therefore overstates what batching buys; against "
            f"the unbatched node at its best it is {bat / best_unb:.2f}x."
        )
    for label, table in (("HTTP", http), ("handle", handle)):
        b = (table.get("mlp_batched") or {}).get("batches")
        if b and b["mean_batch"]:
            notes.append(
                f"Batches formed ({label}, c={c}): mean {b['mean_batch']}, largest "
                f"{b['max_batch']} of max_batch_size {args.max_batch_size}"
                + (
                    f" - small although up to {c} requests wait in or in front of the node "
                    "(`loadtests/repro_batch_formation.py` shows, without Ray, how the batcher "
                    "forms batches when arrivals are spread out)."
                    if b["mean_batch"] < args.max_batch_size / 4
                    else "."
                )
            )
    if "http_ceiling" in http:
        ceil = http["http_ceiling"]["rps"]
        best = max(http[a]["rps"] for a in http if a.startswith("mlp_batched"))
        capped = best >= 0.8 * ceil
        notes.append(
            f"HTTP ceiling (same request, no model): {ceil:.0f} rps; the best batched app "
            f"reached {best / ceil:.0%} of it"
            + (
                ", so the HTTP path, not the model, caps batched throughput: the ratio is a "
                "lower bound of what batching buys (see the handle-level figures)."
                if capped
                else ", so the HTTP path does not cap the batched figures here."
            )
        )
    result = {
        "benchmark": "bench_batching",
        "model": model,
        "model_timing": timing,
        "model_gain": gain,
        "checks": checks,
        "summary": {"http": http, "handle": handle},
        "notes": notes,
        "machine": raw["machine"],
        "all_pass": checks[0]["verdict"] == "PASS",
    }
    markdown = render(args, result)
    path = h.write_report("bench_batching", markdown, {**result, "raw": raw})
    print(
        json.dumps(
            {k: v for k, v in result.items() if k != "summary"}
            | {
                "http": {
                    a: {k: s[k] for k in ("rps", "p50_ms", "p95_ms", "errors", "batches")}
                    for a, s in http.items()
                },
                "handle": {
                    a: {k: s[k] for k in ("rps", "p50_ms", "batches")} for a, s in handle.items()
                },
            },
            indent=1,
        )
    )
    print()
    print(markdown)
    print(f"\nreport: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
