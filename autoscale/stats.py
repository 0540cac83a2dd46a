"""Replica-side statistics the autoscaling policies read (via ``record_autoscaling_stats``).

Pure and clock-injected: each replica keeps the start and finish of its recent requests and
reports, on demand, p95 latency, arrival rate and service time over short windows.

Service time is what one request costs a replica when it is full, by Little's law: a replica
that holds ``m`` requests at once (its ``max_ongoing_requests``), each taking ``W(m)``, serves
``m / W(m)`` requests per second, so one costs ``W(m) / m`` (:func:`service_time_s`). ``W(k)``
is fitted to the latency of recent requests against the mean number the replica held while
each ran: flat for a node that waits (I/O, a remote call, a sleep: ``m`` of them fit in the
time of one), growing with ``k`` for a node that computes (a core does one at a time).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

#: Metric names reported by every node replica (Ray averages them over ``look_back_period_s``).
P95_MS = "latency_p95_ms"
#: Median latency (ms) over the latency window, for ``GET /<graph>/live``.
P50_MS = "latency_p50_ms"
#: Failed requests per second over the rate window (reported only when some failed).
ERROR_RATE = "error_rate"
ARRIVAL_RATE = "arrival_rate"
SERVICE_TIME_MS = "service_time_ms"
QUEUE_LEN = "queue_len"
BATCH_FILL = "batch_fill"
#: LLM nodes (``nodes.llm.engine_stats``): requests waiting in the engine's scheduler, its
#: KV-cache usage (0..1) and the p95 time to first token (ms) of recent streamed calls.
ENGINE_WAITING = "engine_waiting"
KV_CACHE_USAGE = "kv_cache_usage"
TTFT_P95_MS = "ttft_p95_ms"


#: The fit of latency against concurrency is trusted up to this many times the most requests
#: the replica was seen to hold at once: further out it is a guess (a node that waits may
#: still run out of worker threads before ``max_ongoing_requests``).
EXTRAPOLATION = 2.0
#: Least spread (variance) of the concurrency samples for a slope to be fitted; below it
#: latency is taken as flat in concurrency.
MIN_SPREAD = 0.04


def nearest_rank(ordered: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of the sorted, non-empty ``ordered``, by nearest rank."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def service_time_s(samples: list[tuple[float, float]], max_concurrency: int | None) -> float | None:
    """Replica time one request costs (s) at full concurrency, by Little's law.

    Fits ``W(k) = a + b * k`` (least squares, ``a, b >= 0``) to ``samples`` of (mean requests
    the replica held while a request ran, its latency in s) and returns ``W(n) / n`` at ``n =
    min(max_concurrency, EXTRAPOLATION * the largest k seen)`` (at least 1): a replica full
    with ``n`` requests finishes ``n / W(n)`` a second. Without a spread of ``k`` to fit a
    slope, latency is taken as flat (``b = 0``) -- optimistic for a node that computes, until
    load makes it hold more requests at once and the slope shows.

    Args:
        samples: (mean concurrency >= 1, latency s) of recent requests.
        max_concurrency: the replica's ``max_ongoing_requests`` (None: no cap).

    Returns:
        Seconds of replica time per request; None without samples.
    """
    if not samples:
        return None
    n = len(samples)
    mean_k = sum(k for k, _ in samples) / n
    mean_w = sum(w for _, w in samples) / n
    var_k = sum((k - mean_k) ** 2 for k, _ in samples) / n
    slope = 0.0
    if var_k >= MIN_SPREAD:
        slope = max(0.0, sum((k - mean_k) * (w - mean_w) for k, w in samples) / n / var_k)
    intercept = mean_w - slope * mean_k
    if intercept < 0:  # all of the latency grows with concurrency
        intercept, slope = 0.0, mean_w / mean_k
    full = max(1.0, EXTRAPOLATION * max(k for k, _ in samples))
    if max_concurrency is not None:
        full = min(full, float(max_concurrency))
    return (intercept + slope * full) / full


#: Most requests (and batches) a replica keeps figures of, whatever its rate: the windows are
#: trimmed on every update, this caps them at rates past ~10,000 requests/s.
MAX_SAMPLES = 50_000


class ReplicaStats:
    """Sliding-window request statistics of one replica. Memory stays bounded: every update
    trims what fell out of the windows, and each window holds at most ``MAX_SAMPLES``.

    Args:
        latency_window_s: window for p95 latency (short: it should react within seconds).
        rate_window_s: window for arrival rate and service time (longer: less noise).
        clock: monotonic clock in seconds; inject a fake one in tests.
        max_concurrency: requests the replica takes at once (its ``max_ongoing_requests``),
            for the service time (:func:`service_time_s`); None: no cap.
    """

    def __init__(
        self,
        latency_window_s: float = 2.0,
        rate_window_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        max_concurrency: int | None = None,
    ):
        self.latency_window_s = latency_window_s
        self.rate_window_s = rate_window_s
        self.max_concurrency = max_concurrency
        self._clock = clock
        self._arrivals: deque[float] = deque(maxlen=MAX_SAMPLES)
        # (finish time, latency s), and (finish time, mean requests held while it ran)
        self._done: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)
        self._held: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)
        self._in_flight = 0
        # Requests held, integrated over time (request-seconds) up to ``_area_at``; each
        # running request's start time -> the integral then (equal starts share the value).
        self._area, self._area_at = 0.0, clock()
        self._open: dict[float, tuple[float, int]] = {}
        self._batches: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)  # (time, fill)
        self._errors: deque[float] = deque(maxlen=MAX_SAMPLES)

    def batch(self, size: int, max_size: int) -> None:
        """Note a batch of ``size`` requests formed where at most ``max_size`` fit."""
        now = self._clock()
        self._batches.append((now, size / max_size))
        self._trim(now)

    def _integrate(self, now: float) -> None:
        self._area += self._in_flight * max(0.0, now - self._area_at)
        self._area_at = max(self._area_at, now)

    def started(self) -> float:
        """Note a request's arrival; returns its start time for :meth:`finished`."""
        now = self._clock()
        self._integrate(now)
        self._arrivals.append(now)
        self._in_flight += 1
        area, count = self._open.get(now, (self._area, 0))
        self._open[now] = (area, count + 1)
        self._trim(now)
        return now

    def finished(self, start: float) -> None:
        """Note that the request started at ``start`` finished."""
        now = self._clock()
        self._integrate(now)
        latency = now - start
        self._done.append((now, latency))
        area, count = self._open.pop(start, (self._area, 1))
        if count > 1:
            self._open[start] = (area, count - 1)
        # The mean number of requests the replica held while this one ran (itself included).
        held = (self._area - area) / latency if latency > 0 else float(self._in_flight)
        self._held.append((now, max(1.0, held)))
        self._in_flight -= 1
        self._trim(now)

    def failed(self) -> None:
        """Note that a request failed (it still calls :meth:`finished`)."""
        now = self._clock()
        self._errors.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        horizon = now - max(self.latency_window_s, self.rate_window_s)
        for times in (self._arrivals, self._errors):
            while times and times[0] < horizon:
                times.popleft()
        for q in (self._done, self._held, self._batches):
            while q and q[0][0] < horizon:
                q.popleft()

    def snapshot(self) -> dict[str, float]:
        """p50 and p95 latency (ms, over the latency window), arrival rate (req/s), error rate
        (failed req/s), service time (ms per request at full concurrency,
        :func:`service_time_s`) and batch fill (mean batch size over the
        most that fit, batched nodes only) over the rate window, and requests in the replica
        now; a metric with no data (or no error) is left out."""
        now = self._clock()
        self._trim(now)
        out: dict[str, float] = {}
        recent = sorted(lat for t, lat in self._done if t >= now - self.latency_window_s)
        if recent:
            out[P50_MS] = 1000.0 * nearest_rank(recent, 0.5)
            out[P95_MS] = 1000.0 * nearest_rank(recent, 0.95)
        arrivals = sum(1 for t in self._arrivals if t >= now - self.rate_window_s)
        out[ARRIVAL_RATE] = arrivals / self.rate_window_s
        errors = sum(1 for t in self._errors if t >= now - self.rate_window_s)
        if errors:
            out[ERROR_RATE] = errors / self.rate_window_s
        since = now - self.rate_window_s
        samples = [
            (held, lat)
            for (t, lat), (_, held) in zip(self._done, self._held, strict=True)
            if t >= since
        ]
        service = service_time_s(samples, self.max_concurrency)
        if service is not None:
            out[SERVICE_TIME_MS] = 1000.0 * service
        out[QUEUE_LEN] = float(self._in_flight)
        fills = [f for t, f in self._batches if t >= now - self.rate_window_s]
        if fills:
            out[BATCH_FILL] = sum(fills) / len(fills)
        return out
