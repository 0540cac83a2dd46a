"""An LLM node scaled on its engine's own signals, live on the CPU vLLM engine.

One private local Ray cluster serves the tiny demo model (``graphs.examples.tiny_llm``, built
locally) behind a prompt template, the LLM node autoscaled by servegraph's policy (1..2
replicas) with a time-to-first-token SLO, its engine batching at most ``--max-num-seqs``
sequences. ``--users`` closed-loop clients stream completions for ``--high-s`` s, then one for
``--tail-s`` s. The engine's queue (requests waiting in vLLM's scheduler), its KV-cache usage
and the time to first token reach the policy through ``record_autoscaling_stats``
(``nodes.llm.engine_stats``); the replica's handle-side queue stays empty, since a replica takes
up to ``max_ongoing_requests`` at once. Writes ``reports/autoscale_llm.{md,json,png}``: replicas,
the engine's queue and time to first token over time, and the policy's decisions.

    python loadtests/autoscale_llm.py [--users 12] [--high-s 120] [--tail-s 60]
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import _harness as h
from _autoscale_live.worker import controller_log_lines
from _harness import plots

APP = "as_llm"
NODE = "chat"


def _graph(spec: dict[str, Any], model_path: str) -> dict[str, Any]:
    return {
        "name": APP,
        "inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [1]}],
        "entry": ["template", NODE],
        "ingress": {"num_cpus": 0},
        "nodes": [
            {"name": "template", "kind": "preprocess", "function": "nodes.llm:PromptTemplate"},
            {
                "name": NODE,
                "kind": "model",
                "runtime": "vllm",
                "model_path": model_path,
                "num_cpus": 0,
                "max_ongoing_requests": 64,
                "engine": {
                    "dtype": "float32",
                    "max_model_len": 512,
                    "cpu_kv_cache_gb": 1,
                    "max_num_seqs": spec["max_num_seqs"],
                },
                "autoscaling": {
                    "min_replicas": 1,
                    "max_replicas": 2,
                    "ttft_slo_p95_ms": spec["ttft_slo_ms"],
                    "upscale_cooldown_s": 2,
                    "downscale_cooldown_s": 15,
                },
            },
        ],
    }


class Sampler(threading.Thread):
    """Every second: the node's replicas and one replica's engine state."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.rows: list[dict[str, Any]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        asyncio.run(self._sample())

    async def _sample(self) -> None:
        from ray import serve

        # In a loop of its own: the handle's router runs on the caller's event loop.
        handle = serve.get_deployment_handle(NODE, APP)
        while not self.halt.is_set():
            row: dict[str, Any] = {"t": time.time()}
            try:
                st = serve.status().applications[APP].deployments[NODE]
                states = h.replica_counts(st)
                row["running"] = states.get("RUNNING", 0)
                row["starting"] = states.get("STARTING", 0)
                stats = await asyncio.wait_for(handle.stats.remote(), 5)
                row["engine_waiting"] = stats.get("engine_waiting")
                row["kv_cache_usage"] = stats.get("kv_cache_usage")
            except Exception as exc:  # a missed sample is a gap
                row["error"] = repr(exc)[:200]
            self.rows.append(row)
            await asyncio.sleep(1.0)


async def _load(url: str, users: int, seconds: float, out: list[list[float]]) -> None:
    """``users`` clients streaming completions for ``seconds``: (start, ttft s, end, ok)."""
    import httpx

    body = {
        "model": APP,
        "prompt": "Tell me a story.",
        "max_tokens": 48,
        "ignore_eos": True,
        "stream": True,
    }
    stop = time.time() + seconds
    async with httpx.AsyncClient(timeout=120) as client:

        async def user() -> None:
            while time.time() < stop:
                start, first, ok = time.time(), None, False
                try:
                    async with client.stream("POST", url, json=body) as r:
                        async for line in r.aiter_lines():
                            if first is None and line.startswith("data:") and '"text"' in line:
                                first = time.time()
                        ok = r.status_code == 200
                except Exception:
                    ok = False
                out.append([start, (first - start) if first else -1.0, time.time(), float(ok)])

        await asyncio.gather(*(user() for _ in range(users)))


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    from ray import serve

    import graphs
    from graphs.examples.tiny_llm import ensure_built

    model_path = ensure_built()
    requests: list[list[float]] = []
    with h.ray_cluster(num_cpus=2):
        t_deploy = time.time()
        serve.run(
            graphs.compile_graph(graphs.parse_graph(_graph(spec, model_path))),
            name=APP,
            route_prefix=f"/{APP}",
        )
        h.wait_ready(f"{h.BASE_URL}/{APP}/predict", {"inputs": {"prompt": ["Hi"]}}, timeout_s=300)
        sampler = Sampler()
        sampler.start()
        url = f"{h.BASE_URL}/{APP}/v1/completions"
        t0 = time.time()
        asyncio.run(_load(url, spec["users"], spec["high_s"], requests))
        t_down = time.time()
        asyncio.run(_load(url, 1, spec["tail_s"], requests))
        sampler.halt.set()
        sampler.join(timeout=10)
        log = controller_log_lines(APP, t_deploy)
        serve.delete(APP)
    return {
        "t0": t0,
        "t_down": t_down,
        "requests": requests,
        "samples": sampler.rows,
        "decisions": log["decisions"],
        "policy_errors": log["errors"],
        "machine": h.machine_info(),
    }


def _p95(values: list[float]) -> float | None:
    values = sorted(values)
    return values[min(len(values) - 1, int(0.95 * len(values)))] if values else None


def _plot(raw: dict[str, Any], path: str) -> None:
    plt = plots.pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    t0 = raw["t0"]
    rows = [r for r in raw["samples"] if "running" in r]
    ts = [r["t"] - t0 for r in rows]
    axes[0].step(ts, [r["running"] for r in rows], where="post", label="running")
    axes[0].step(
        ts,
        [r["running"] + r["starting"] for r in rows],
        where="post",
        ls="--",
        label="running + starting",
    )
    axes[0].set_ylabel("replicas of the LLM node")
    axes[0].legend(fontsize=8)
    axes[1].plot(ts, [r.get("engine_waiting") or 0 for r in rows], label="waiting in the scheduler")
    axes[1].set_ylabel("engine queue (one replica)")
    done = [r for r in raw["requests"] if r[1] >= 0]
    axes[2].scatter([r[0] + r[1] - t0 for r in done], [1000 * r[1] for r in done], s=4)
    axes[2].axhline(raw["spec"]["ttft_slo_ms"], color="red", ls="--", lw=1, label="TTFT SLO")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("time to first token (ms)")
    axes[2].set_xlabel("seconds since the load started")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.axvspan(0, raw["t_down"] - t0, color="grey", alpha=0.12)
        ax.grid(alpha=0.3)
    plots.save(fig, path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--high-s", type=float, default=120.0)
    parser.add_argument("--tail-s", type=float, default=60.0)
    parser.add_argument("--max-num-seqs", type=int, default=4)
    parser.add_argument("--ttft-slo-ms", type=float, default=200.0)
    h.add_keep_logs(parser)
    args = h.parse(parser, argv, worker)
    if args is None:
        return 0

    from graphs.cluster import RECOMMENDED_ENV

    spec = {
        "users": args.users,
        "high_s": args.high_s,
        "tail_s": args.tail_s,
        "max_num_seqs": args.max_num_seqs,
        "ttft_slo_ms": args.ttft_slo_ms,
    }
    raw = h.run_worker(
        os.path.abspath(__file__),
        spec,
        dict(RECOMMENDED_ENV),
        tag="autoscale_llm",
        timeout_s=600 + args.high_s + args.tail_s,
        keep_logs=args.keep_logs,
    )
    raw["spec"] = spec
    os.makedirs(args.reports_dir, exist_ok=True)
    _plot(raw, os.path.join(args.reports_dir, "autoscale_llm.png"))
    t0, t_down = raw["t0"], raw["t_down"]
    rows = [r for r in raw["samples"] if "running" in r]
    up = next((r["t"] - t0 for r in rows if r["running"] + r["starting"] >= 2), None)
    up_running = next((r["t"] - t0 for r in rows if r["running"] >= 2), None)
    down = next((r["t"] - t_down for r in rows if r["t"] > t_down and r["running"] <= 1), None)
    phases = []
    for name, lo, hi in (
        ("high, first 30 s", t0, t0 + 30),
        ("high, last 30 s", t_down - 30, t_down),
        ("tail", t_down, t_down + spec["tail_s"]),
    ):
        sel = [r for r in raw["requests"] if lo <= r[0] < hi]
        ttft = [1000 * r[1] for r in sel if r[1] >= 0]
        phases.append(
            [
                name,
                len(sel),
                int(sum(1 - r[3] for r in sel)),
                round(sorted(ttft)[len(ttft) // 2]) if ttft else "-",
                round(_p95(ttft) or 0) if ttft else "-",
            ]
        )
    checks = [
        {
            "check": "a second replica is added under the load (s after it started)",
            "value": "-" if up is None else round(up, 1),
            "verdict": "PASS" if up is not None else "FAIL",
        },
        {
            "check": "back to one replica after the load drops (s)",
            "value": "-" if down is None else round(down, 1),
            "verdict": "PASS" if down is not None else "FAIL",
        },
    ]
    decisions = [
        f"| {'?' if ts is None else f'{ts - t0:+.1f} s'} | {line} |"
        for ts, line in raw["decisions"]
    ]
    markdown = "\n".join(
        [
            "# An LLM node scaled on its engine's signals",
            "",
            f"{h.measured('autoscale_llm.py')} The tiny demo model on the CPU vLLM engine "
            f"(`max_num_seqs: {spec['max_num_seqs']}`), behind a prompt template; the LLM node "
            f"autoscaled by servegraph's policy, 1..2 replicas, `ttft_slo_p95_ms: "
            f"{spec['ttft_slo_ms']:g}`. {spec['users']} clients stream completions (48 tokens) "
            f"for {spec['high_s']:g} s, then one for {spec['tail_s']:g} s.",
            "",
            h.md_table(["check", "value", "verdict"], [list(c.values()) for c in checks]),
            "",
            f"First new replica asked for after {up if up is None else round(up, 1)} s, running "
            f"after {up_running if up_running is None else round(up_running, 1)} s (a vLLM "
            "engine takes tens of seconds to start on this CPU).",
            "",
            h.md_table(["phase", "requests", "failed", "TTFT p50 (ms)", "TTFT p95 (ms)"], phases),
            "",
            "![replicas, engine queue and time to first token](autoscale_llm.png)",
            "",
            "## Decisions (Serve controller log)",
            "",
            "| time after the load started | decision |",
            "|---|---|",
            *(decisions or ["| - | none logged |"]),
            "",
            f"Policy errors: {len(raw['policy_errors'])}. Machine: {raw['machine']}",
        ]
    )
    data = {k: v for k, v in raw.items() if k != "requests"}
    h.emit("autoscale_llm", markdown, {**data, "checks": checks}, checks, args.reports_dir)
    return 0 if all(c["verdict"] == "PASS" for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
