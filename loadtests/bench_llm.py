"""LLM graph vs the same vLLM engine called directly: tokens/s and time to first token.

One worker process starts a private Ray cluster (``graphs.cluster.start``, token auth,
``graphs.cluster.RECOMMENDED_ENV``) serving the
graph ``template`` (``nodes.llm:PromptTemplate``) -> ``llm`` (``runtime: vllm``) at
``127.0.0.1:8100/llmbench``, and the same engine in-process (``AsyncLLM`` built from the same
node spec with :func:`nodes.llm.engine_kwargs`, no Ray, no HTTP). Both get the same workload:
``--requests`` chat requests (``--prompts`` distinct user messages, cycled), ``--concurrency``
at a time, each generating exactly ``--max-tokens`` tokens (``ignore_eos``) at temperature 1.

- **direct**: prompts rendered as the graph renders them (the same ``PromptTemplate``, then the
  model's chat template), streamed with ``RequestOutputKind.DELTA``; first token: the first
  output with text.
- **graph**: ``POST /v1/chat/completions`` with ``"stream": true`` over HTTP (server-sent
  events parsed by an ``httpx`` client in the worker); first token: the first event with text.

After a warm-up of each, measured rounds alternate (direct, graph, graph, direct, ...), so both
see the same machine; throughput is completion tokens over a round's wall time, TTFT is per
request. Target: graph/direct tokens/s >= 0.9 (median of the per-round ratios); the TTFT
overhead (graph - direct, p50) is reported in ms.

``--gpu`` runs the engines on CUDA: ``--replicas`` (default 2) replicas of the node with
``num_gpus: 1/replicas`` (fractional GPUs) against as many in-process engines, requests spread
round-robin; every engine, the graph's and the direct ones (all up at once), takes
``0.9 / (2 * replicas)`` of the GPU's memory. ``loadtests/bench_llm_gpu.sh`` sets up a CUDA
vLLM and runs that.

    python loadtests/bench_llm.py [--requests 48] [--concurrency 8] [--max-tokens 128]
        [--rounds 4] [--size tiny|small | --model DIR] [--stream-batch-ms MS] [--engine-env K=V]
        [--gpu [--replicas 2]]
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import sys
import time
from typing import Any

import _harness as h
from _bench_llm.report import LABELS, ratio_of, report

APP = "llmbench"
#: Random-weight models ``--size`` builds: (folder under the repo, or the demo's; shape).
SIZES: dict[str, tuple[str | None, dict[str, int]]] = {
    "tiny": (None, {}),
    "small": ("artifacts/tiny-llm-small", {"hidden_size": 768, "layers": 12, "heads": 12}),
}
SYSTEM = "You are a helpful assistant. Answer briefly."
PROMPTS = [
    "Tell me a story about a fox.",
    "What is a graph of models?",
    "How do routers split traffic?",
    "Count from one to twenty.",
    "Say hello politely.",
    "Why do tokens stream one by one?",
    "Describe a lazy dog.",
    "What does a bandit learn?",
]


# --- the graph and the workload ------------------------------------------------------------------


def node_spec(args: dict[str, Any]) -> dict[str, Any]:
    """The LLM node, as the graph declares it (the direct engine is built from it too)."""
    node: dict[str, Any] = {
        "name": "llm",
        "kind": "model",
        "runtime": "vllm",
        "model_path": args["model"],
        "max_ongoing_requests": 256,
        "engine": {"max_model_len": args["max_model_len"], "seed": 0},
    }
    if args.get("stream_batch_ms") is not None:
        node["engine"]["stream_batch_ms"] = args["stream_batch_ms"]
    if args.get("engine_env"):
        node["engine"]["env"] = dict(kv.split("=", 1) for kv in args["engine_env"])
    if args["gpu"]:
        node["num_gpus"] = round(1.0 / args["replicas"], 4)
        node["num_replicas"] = args["replicas"]
        # The graph's engines and the direct ones share the GPU for the whole run.
        share = round(0.9 / (2 * args["replicas"]), 4)
        node["engine"].update({"dtype": "bfloat16", "gpu_memory_utilization": share})
    else:
        node["num_cpus"] = 1
        node["engine"].update({"dtype": "float32", "cpu_kv_cache_gb": 1})
    return node


#: The graphs measured, by placement: the template fused into the ingress and the engine in a
#: deployment of its own (the default), or the whole graph in the ingress (``fusion: all``).
FUSIONS = {"cheap": APP, "all": f"{APP}-all"}


def graph_spec(args: dict[str, Any], fusion: str = "cheap") -> dict[str, Any]:
    llm = node_spec(args)
    spec: dict[str, Any] = {
        "name": FUSIONS[fusion],
        "fusion": fusion,
        "inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [1]}],
        "entry": ["template", "llm"],
        "nodes": [
            {
                "name": "template",
                "kind": "preprocess",
                "function": "nodes.llm:PromptTemplate",
                "init_kwargs": {"system": SYSTEM},
            },
            llm,
        ],
    }
    if fusion == "all":
        # The engine runs in the ingress: the node's deployment options become the ingress's.
        own = {k: llm.pop(k) for k in OWN if k in llm}
        spec["ingress"] = own
    return spec


#: The LLM node's deployment options (moved to the ingress under ``fusion: all``).
OWN = ("num_cpus", "num_gpus", "num_replicas", "max_ongoing_requests")


def requests(args: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat requests (OpenAI fields), the same for both workers."""
    return [
        {
            "messages": [{"role": "user", "content": PROMPTS[i % args["prompts"]]}],
            "max_tokens": args["max_tokens"],
            "temperature": 1.0,
            "ignore_eos": True,
        }
        for i in range(args["requests"])
    ]


async def run_round(call: Any, reqs: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    """Send ``reqs`` through ``call`` (``-> (ttft_s, tokens)``), ``concurrency`` at a time."""
    limit = asyncio.Semaphore(concurrency)
    results: list[tuple[float, int]] = []

    async def one(i: int, req: dict[str, Any]) -> None:
        async with limit:
            results.append(await call(i, req))

    with h.CpuByProcess() as cpu:  # its process scans stay out of the timed window
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i, r) for i, r in enumerate(reqs)))
        wall = time.perf_counter() - t0
    ttfts = sorted(t for t, _ in results)
    tokens = sum(n for _, n in results)
    return {
        "wall_s": round(wall, 3),
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall, 1),
        "ttft_p50_ms": round(1000 * statistics.median(ttfts), 1),
        "ttft_p95_ms": round(1000 * ttfts[int(0.95 * (len(ttfts) - 1))], 1),
        "ttft_mean_ms": round(1000 * statistics.fmean(ttfts), 1),
        "requests": len(results),
        "cpu_cores": cpu.result,
    }


# --- the worker: both paths, interleaved -------------------------------------------------------


def direct_engines(args: dict[str, Any]) -> tuple[list[Any], Any]:
    """The engine(s) in this process, and ``call(i, req) -> (ttft_s, tokens)`` feeding them the
    prompts as the graph renders them (same template, same chat template, per request)."""
    from transformers import AutoTokenizer
    from vllm import SamplingParams
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    from graphs.spec import ModelNode
    from nodes.llm import PromptTemplate, engine_env, engine_kwargs, parse_generation
    from nodes.llm import prompt_token_ids as render

    spec = ModelNode.model_validate(node_spec(args))
    assert spec.engine is not None
    os.environ.update(engine_env(spec.engine))
    # The compute threads Ray gives the node's replica (and so its engine): its whole CPUs, at
    # least one (ray._private.utils.set_omp_num_threads_if_unset).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, math.floor(spec.num_cpus))))
    template = PromptTemplate(system=SYSTEM)
    tokenizer = AutoTokenizer.from_pretrained(spec.model_path)
    engines = [
        AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_kwargs(spec, on_gpu=args["gpu"])))
        for _ in range(args["replicas"] if args["gpu"] else 1)
    ]

    async def call(i: int, req: dict[str, Any]) -> tuple[float, int]:
        params = SamplingParams(
            max_tokens=req["max_tokens"],
            temperature=req["temperature"],
            ignore_eos=True,
            output_kind=RequestOutputKind.DELTA,
        )
        start = time.perf_counter()
        # Rendered per request, as a server would: the template, then the chat template.
        ids = render(tokenizer, parse_generation(template({"messages": req["messages"]})))
        ttft, tokens = 0.0, 0
        stream = engines[i % len(engines)].generate(
            {"prompt_token_ids": ids}, params, f"r{i}-{time.monotonic_ns()}"
        )
        async for out in stream:
            c = out.outputs[0]
            if c.text and not ttft:
                ttft = time.perf_counter() - start
            tokens += len(c.token_ids)
        return ttft, tokens

    return engines, call


def graph_call(client: Any, url: str, model: str) -> Any:
    """``call(i, req) -> (ttft_s, tokens)`` streaming a chat completion from the graph."""

    async def call(i: int, req: dict[str, Any]) -> tuple[float, int]:
        body = {"model": model, "stream": True, "stream_options": {"include_usage": True}, **req}
        start = time.perf_counter()
        ttft, tokens = 0.0, 0
        async with client.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {await r.aread()!r}")
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                elif chunk["choices"][0]["delta"].get("content") and not ttft:
                    ttft = time.perf_counter() - start
        return ttft, tokens

    return call


def summary(rounds: list[dict[str, Any]], start_s: float) -> dict[str, Any]:
    labels = sorted({k for r in rounds for k in r["cpu_cores"]})
    return {
        "rounds": rounds,
        "cpu_cores": {
            k: round(statistics.median(r["cpu_cores"].get(k, 0.0) for r in rounds), 3)
            for k in labels
        },
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rounds),
        "ttft_p50_ms": statistics.median(r["ttft_p50_ms"] for r in rounds),
        "ttft_p95_ms": statistics.median(r["ttft_p95_ms"] for r in rounds),
        "engine_start_s": start_s,
    }


def worker(args: dict[str, Any]) -> dict[str, Any]:
    """A private cluster serving the graph under each placement, and the same engine(s) in this
    process; their rounds rotate (direct, cheap, all; all, cheap, direct; ...) so that all of them
    see the same machine."""
    import httpx
    from ray import serve

    from graphs import compile_graph, parse_graph

    urls = {f: f"{h.BASE_URL}/{name}/v1/chat/completions" for f, name in FUSIONS.items()}
    reqs = requests(args)
    starts: dict[str, float] = {}
    with h.ray_cluster(num_cpus=args["cluster_cpus"]):
        for fusion, name in FUSIONS.items():
            t0 = time.perf_counter()
            serve.run(
                compile_graph(parse_graph(graph_spec(args, fusion))),
                name=name,
                route_prefix=f"/{name}",
            )
            probe = {
                "model": name,
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 2,
            }
            h.wait_ready(urls[fusion], probe, timeout_s=120)
            starts[fusion] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        engines, direct = direct_engines(args)
        starts["direct"] = round(time.perf_counter() - t0, 1)

        async def run() -> dict[str, Any]:
            limits = httpx.Limits(max_connections=args["concurrency"] * 4)
            async with httpx.AsyncClient(timeout=600, limits=limits) as client:
                paths = {"direct": direct}
                for fusion, name in FUSIONS.items():
                    paths[fusion] = graph_call(client, urls[fusion], name)
                warm = reqs[: max(args["concurrency"], 2)]
                for call in paths.values():
                    await run_round(call, warm, args["concurrency"])
                rounds: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
                for i in range(args["rounds"]):
                    order = list(paths) if i % 2 == 0 else list(reversed(paths))
                    for p in order:
                        got = await run_round(paths[p], reqs, args["concurrency"])
                        rounds[p].append(got)
                        print(f"[bench_llm] {i} {p}: {got}", file=sys.stderr, flush=True)
            # Handles need the driver's event loop here (the router runs on the caller's loop).
            stats = {
                "cheap": await serve.get_deployment_handle(
                    "llm", app_name=FUSIONS["cheap"]
                ).stats.remote(),
                "all": await serve.get_deployment_handle(
                    "ingress", app_name=FUSIONS["all"]
                ).hosted.remote("llm", "stats"),
            }
            out = {p: summary(rounds[p], starts[p]) for p in paths}
            out["direct"]["threads"] = os.environ.get("OMP_NUM_THREADS")
            for fusion in FUSIONS:
                out[fusion]["node"] = stats[fusion]
            return out

        result = asyncio.run(run())
        for engine in engines:
            engine.shutdown()
        for name in FUSIONS.values():
            serve.delete(name)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    parser.add_argument("--requests", type=int, default=48)
    h.add_concurrency(parser, 8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--prompts", type=int, default=len(PROMPTS))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--model", default=None, help="a model directory (overrides --size)")
    parser.add_argument(
        "--size",
        choices=sorted(SIZES),
        default="tiny",
        help="the random-weight Llama built here: tiny (the demo's, 0.14 M parameters) or small "
        "(hidden 768 x 12 layers, 85 M: as slow per token as a small real model)",
    )
    parser.add_argument("--gpu", action="store_true", help="CUDA, fractional-GPU replicas")
    parser.add_argument("--replicas", type=int, default=2, help="--gpu: replicas sharing a GPU")
    parser.add_argument("--cluster-cpus", type=int, default=4)
    parser.add_argument(
        "--stream-batch-ms", type=float, default=None, help="the node's engine.stream_batch_ms"
    )
    parser.add_argument(
        "--engine-env",
        action="append",
        metavar="KEY=VALUE",
        help="the node's engine.env (both engines get it), e.g. VLLM_CPU_OMP_THREADS_BIND=auto",
    )
    parser.add_argument(
        "--target",
        type=float,
        default=None,
        help="graph/direct tokens/s to reach (default 0.9 for --size tiny, 0.95 otherwise)",
    )
    parser.add_argument("--name", default=None, help="report name (default bench_llm[_gpu])")
    ns = h.parse(parser, argv, worker)
    if ns is None:
        return 0

    from graphs.cluster import RECOMMENDED_ENV
    from graphs.examples.tiny_llm import ensure_built

    args = {k: v for k, v in vars(ns).items() if not k.startswith("worker") and k != "reports_dir"}
    if args["model"] is None:
        out_dir, shape = SIZES[args["size"]]
        args["model"] = ensure_built(os.path.join(h.REPO, out_dir) if out_dir else None, **shape)
    args["model"] = os.path.abspath(args["model"])
    args["prompts"] = max(1, min(args["prompts"], len(PROMPTS)))
    if args["target"] is None:
        args["target"] = 0.9 if args["size"] == "tiny" and ns.model is None else 0.95
    args["machine"] = h.machine_info()
    name = args.pop("name") or ("bench_llm_gpu" if args["gpu"] else "bench_llm")
    raw = h.run_worker(
        os.path.abspath(__file__), args, dict(RECOMMENDED_ENV), tag="llm", timeout_s=1500
    )
    markdown = report(args, raw)
    direct = raw["direct"]
    summary = {
        "tokens_per_s": {p: raw[p]["tokens_per_s"] for p in LABELS},
        "throughput_ratio": {f: ratio_of(direct, raw[f]) for f in FUSIONS},
        "ttft_p50_ms": {p: raw[p]["ttft_p50_ms"] for p in LABELS},
        "ttft_overhead_p50_ms": {
            f: round(raw[f]["ttft_p50_ms"] - direct["ttft_p50_ms"], 1) for f in FUSIONS
        },
    }
    h.emit(name, markdown, {"args": args, **raw, **summary}, summary, ns.reports_dir, indent=None)
    return 0


if __name__ == "__main__":  # vLLM starts its engine in child processes: keep the entry guarded
    sys.exit(main())
