"""``servegraph bench URL``: a short load against a graph, with a progress bar and a summary.

``-c`` threads, each on one kept-alive connection, POST the same JSON body to ``URL`` (a
graph's ``/predict``, or its prefix, to which ``/predict`` is added) until ``-n`` requests are
sent or ``--duration`` seconds have passed. Without ``--data`` the body is zeros shaped as the
graph's inputs say (its ``/graph``). The progress bar goes to standard error; the summary
(throughput, latency percentiles, errors by status) to standard output.
"""

from __future__ import annotations

import http.client
import json
import math
import sys
import threading
import time
import urllib.parse
from typing import Any, TextIO

from graphs.cli_ops import CliError, fetch_json

__all__ = ["bench", "bench_text", "default_body", "percentile", "predict_url"]


def predict_url(url: str) -> str:
    """``url`` itself when it names an endpoint (``.../predict``, ``.../infer``), else its
    ``/predict``."""
    url = url.rstrip("/")
    return url if url.endswith(("/predict", "/infer")) else f"{url}/predict"


def default_body(url: str, timeout: float = 30.0) -> dict[str, Any]:
    """Zeros shaped as the graph's inputs (one row; any size ``-1`` becomes 1), from ``/graph``."""
    graph = fetch_json(predict_url(url).rsplit("/", 1)[0] + "/graph", None, {}, timeout)
    inputs = {}
    for spec in graph.get("inputs", []):
        shape = [1 if d in (-1, None) else int(d) for d in spec.get("shape") or [1]]
        value: Any = 0.0 if spec.get("datatype", "FP32") != "BYTES" else "hello"
        for size in reversed(shape):
            value = [value] * size
        inputs[spec["name"]] = value
    return {"inputs": inputs}


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of ascending ``sorted_values``; None when empty."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


class _Progress:
    """A one-line progress bar on a terminal stream, redrawn at most 10 times a second."""

    def __init__(self, total: int | None, duration: float | None, out: TextIO):
        self.total, self.duration, self.out = total, duration, out
        self._last = 0.0

    def draw(self, done: int, errors: int, started: float, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < 0.1:
            return
        self._last = now
        elapsed = max(now - started, 1e-9)
        shares = []
        if self.total:
            shares.append(done / self.total)
        if self.duration:
            shares.append(elapsed / self.duration)
        share = min(1.0, max(shares, default=0.0))
        bar = "#" * int(30 * share) + "." * (30 - int(30 * share))
        self.out.write(
            f"\r[{bar}] {done} requests, {errors} errors, {done / elapsed:.1f} req/s, "
            f"{elapsed:.1f} s"
        )
        if final:
            self.out.write("\n")
        self.out.flush()


def bench(
    url: str,
    body: Any,
    requests: int | None = 200,
    concurrency: int = 8,
    duration: float | None = None,
    timeout: float = 30.0,
    progress: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Send ``requests`` POSTs of ``body`` to ``url`` (or for ``duration`` s) over
    ``concurrency`` connections; returns the summary (see :func:`bench_text`).

    Raises:
        CliError: the first request could not reach the server (exit 3).
    """
    target = urllib.parse.urlsplit(predict_url(url))
    path = target.path + (f"?{target.query}" if target.query else "")
    payload = json.dumps(body).encode()
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    sent = [0]
    started = time.monotonic()
    bar = _Progress(requests, duration, progress) if progress is not None else None

    def take() -> bool:
        with lock:
            if requests is not None and sent[0] >= requests:
                return False
            if duration is not None and time.monotonic() - started >= duration:
                return False
            sent[0] += 1
            return True

    def worker() -> None:
        conn: http.client.HTTPConnection | None = None
        while take():
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = _connect(target, timeout)
                conn.request("POST", path, payload, {"Content-Type": "application/json"})
                reply = conn.getresponse()
                reply.read()
                status = str(reply.status)
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
            elapsed_ms = (time.perf_counter() - t0) * 1000.0
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status.startswith("2"):
                    latencies.append(elapsed_ms)
                done = sum(statuses.values())
                errors = done - len(latencies)
            if bar is not None:
                bar.draw(done, errors, started)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    done = sum(statuses.values())
    if bar is not None:
        bar.draw(done, done - len(latencies), started, final=True)
    if done and not latencies and all(not s.isdigit() for s in statuses):
        raise CliError(f"cannot reach {predict_url(url)}: {', '.join(sorted(statuses))}", 3)
    ordered = sorted(latencies)
    return {
        "url": predict_url(url),
        "requests": done,
        "ok": len(latencies),
        "errors": done - len(latencies),
        "statuses": dict(sorted(statuses.items())),
        "concurrency": concurrency,
        "seconds": wall,
        "throughput_rps": len(latencies) / wall if wall > 0 else 0.0,
        "latency_ms": {
            "mean": sum(ordered) / len(ordered) if ordered else None,
            "p50": percentile(ordered, 0.5),
            "p90": percentile(ordered, 0.9),
            "p99": percentile(ordered, 0.99),
            "max": ordered[-1] if ordered else None,
        },
    }


def _connect(target: urllib.parse.SplitResult, timeout: float) -> http.client.HTTPConnection:
    port = target.port
    if target.scheme == "https":
        return http.client.HTTPSConnection(target.hostname or "", port, timeout=timeout)
    return http.client.HTTPConnection(target.hostname or "", port, timeout=timeout)


def bench_text(report: dict[str, Any]) -> str:
    """The summary as readable lines."""
    lat = report["latency_ms"]

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f}"

    statuses = ", ".join(f"{k}: {v}" for k, v in report["statuses"].items())
    return "\n".join(
        [
            f"{report['url']}: {report['requests']} requests in {report['seconds']:.2f} s "
            f"over {report['concurrency']} connections",
            f"  throughput  {report['throughput_rps']:.1f} req/s (successful)",
            f"  latency ms  mean {ms(lat['mean'])}  p50 {ms(lat['p50'])}  p90 {ms(lat['p90'])}"
            f"  p99 {ms(lat['p99'])}  max {ms(lat['max'])}",
            f"  answers     {statuses or 'none'}  ({report['errors']} errors)",
        ]
    )
