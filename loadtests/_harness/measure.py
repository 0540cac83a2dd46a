"""Measurements: closed-loop HTTP load with the vendored ``loadgen``, CPU split, summaries.

Every figure a benchmark compares comes from :func:`measure` (the yardstick's own
``loadgen.run``), taken in alternating rounds (:func:`alternating_rounds`) so that the targets
of one cluster see the same machine, and summarized by the median over rounds.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .paths import REPO


class CpuWatch:
    """CPU the machine spent during a window, split into this process tree (our cluster, our
    load generator) and everything else (other work on the machine: noise)."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._root = psutil.Process()

    def _ours(self) -> float:
        total = 0.0
        for p in [self._root, *self._root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except self._psutil.Error:
                pass
        return total

    def _busy(self) -> float:
        t = self._psutil.cpu_times()
        return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))

    def __enter__(self) -> CpuWatch:
        self._t0, self._busy0, self._ours0 = time.perf_counter(), self._busy(), self._ours()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.perf_counter() - self._t0, 1e-9)
        busy = (self._busy() - self._busy0) / wall
        ours = (self._ours() - self._ours0) / wall
        self.result = {
            "cpu_cores_busy": round(busy, 2),
            "cpu_cores_ours": round(ours, 2),
            "cpu_cores_foreign": round(max(busy - ours, 0.0), 2),
        }


class CpuByProcess:
    """CPU (in cores) each process of this tree spent during a window, by role: Serve replicas
    by ``app:deployment``, the vLLM engine processes by the replica (or this process) that
    started them, HAProxy, this process, and the rest of the cluster."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._root = psutil.Process()

    def _label(self, p: Any) -> str:
        try:
            cmd = " ".join(p.cmdline())
        except self._psutil.Error:
            return "other"
        if p.pid == self._root.pid:
            return "this process"
        if "EngineCore" in cmd or "VLLM" in cmd:
            try:
                return f"engine of {self._label(p.parent())}"
            except self._psutil.Error:
                return "engine"
        if "ServeReplica:" in cmd:
            return cmd.split("ServeReplica:", 1)[1].split()[0]
        if "haproxy" in cmd:
            return "haproxy"
        return "rest of the cluster"

    def _times(self) -> dict[int, tuple[str, float]]:
        out = {}
        for p in [self._root, *self._root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                out[p.pid] = (self._label(p), t.user + t.system)
            except self._psutil.Error:
                pass
        return out

    def __enter__(self) -> CpuByProcess:
        self._t0, self._before = time.perf_counter(), self._times()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.perf_counter() - self._t0, 1e-9)
        cores: dict[str, float] = {}
        for pid, (label, spent) in self._times().items():
            used = spent - self._before.get(pid, (label, 0.0))[1]
            cores[label] = cores.get(label, 0.0) + used / wall
        self.result = {k: round(v, 3) for k, v in sorted(cores.items()) if v >= 0.005}


async def measure_async(url: str, body: Any, concurrency: int, seconds: float) -> dict[str, Any]:
    """One closed-loop measurement with the yardstick ``loadgen.run``, plus the CPU split."""
    from yardsticks import loadgen

    with CpuWatch() as cpu:
        res: dict[str, Any] = await loadgen.run(url, body, concurrency, seconds)
    res.update(cpu.result)
    return res


def measure(url: str, body: Any, concurrency: int, seconds: float) -> dict[str, Any]:
    """:func:`measure_async` from synchronous code."""
    return asyncio.run(measure_async(url, body, concurrency, seconds))


def warm_up(
    urls: Mapping[str, str], body: Any, concurrencies: Sequence[int], seconds: float
) -> None:
    """Connections, handle routers and code paths of every target warmed: ``seconds`` at the
    highest concurrency, then half of that at c=1."""
    for url in urls.values():
        measure(url, body, max(concurrencies), seconds)
        measure(url, body, 1, seconds / 2)


def alternating_rounds(
    urls: Mapping[str, str],
    body: Any,
    concurrencies: Sequence[int],
    rounds: int,
    seconds: float,
    *,
    tag: str,
    after: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Measure every target at every concurrency, ``rounds`` times, the targets' order reversed
    every other round (A B C, C B A, ...); ``after(target, result)`` runs after each one.

    Returns target -> str(concurrency) -> the rounds' results.
    """
    targets = list(urls)
    out: dict[str, dict[str, list[dict[str, Any]]]] = {
        t: {str(c): [] for c in concurrencies} for t in targets
    }
    for r in range(rounds):
        order = targets if r % 2 == 0 else targets[::-1]
        for c in concurrencies:
            for t in order:
                res = measure(urls[t], body, c, seconds)
                res["round"] = r
                if after is not None:
                    after(t, res)
                out[t][str(c)].append(res)
                print(
                    f"[{tag}] round {r} {t} c={c}: p50 {res['p50_ms']:.2f} ms, "
                    f"{res['rps']:.0f} rps, errors {res['errors']}, other work "
                    f"{res['cpu_cores_foreign']:.2f} cores",
                    file=sys.stderr,
                    flush=True,
                )
    return out


# --- summaries ---------------------------------------------------------------------------------


def median_of(rounds: Sequence[Mapping[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rounds))


def summarize(rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Median p50/p95/rps over rounds, with the spread of p50 and rps, and the error count."""
    n = sum(r["n"] for r in rounds)
    errors = sum(r["errors"] for r in rounds)
    return {
        "p50_ms": median_of(rounds, "p50_ms"),
        "p95_ms": median_of(rounds, "p95_ms"),
        "rps": median_of(rounds, "rps"),
        "p50_range_ms": [min(r["p50_ms"] for r in rounds), max(r["p50_ms"] for r in rounds)],
        "rps_range": [min(r["rps"] for r in rounds), max(r["rps"] for r in rounds)],
        "cpu_cores_foreign": round(
            statistics.mean(r.get("cpu_cores_foreign", 0.0) for r in rounds), 2
        ),
        "requests": n,
        "errors": errors,
        "rounds": len(rounds),
    }


def summarize_targets(
    targets: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """:func:`summarize` of every target and concurrency of :func:`alternating_rounds`."""
    return {t: {c: summarize(rs) for c, rs in per_c.items()} for t, per_c in targets.items()}


def machine_info() -> dict[str, Any]:
    """What the figures were measured on, and how busy the machine was."""
    import psutil
    import ray

    others = [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if "raylet" in (p.info.get("name") or "")
    ]
    return {
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "raylets_running": len(others),
        "processes_in_our_tree": len(psutil.Process().children(recursive=True)) + 1,
        "framework_code_mtime": framework_mtime(),
    }


def framework_mtime() -> str:
    """When the framework's code last changed: the figures belong to that version."""
    newest = 0.0
    for pkg in ("graphs", "nodes", "routing", "autoscale"):
        for root, _, files in os.walk(os.path.join(REPO, pkg)):
            for f in files:
                if f.endswith(".py"):
                    newest = max(newest, os.path.getmtime(os.path.join(root, f)))
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(newest)) if newest else "?"
