"""Replica-side statistics the autoscaling policies read (via ``record_autoscaling_stats``).

Pure and clock-injected: each replica keeps the start and finish of its recent requests and
reports, on demand, p95 latency, arrival rate and service time over short windows.
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
    """

    def __init__(
        self,
        latency_window_s: float = 2.0,
        rate_window_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.latency_window_s = latency_window_s
        self.rate_window_s = rate_window_s
        self._clock = clock
        self._arrivals: deque[float] = deque(maxlen=MAX_SAMPLES)
        # (finish time, latency s), and (finish time, busy s / concurrency)
        self._done: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)
        self._busy: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)
        self._in_flight = 0
        self._batches: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)  # (time, fill)
        self._errors: deque[float] = deque(maxlen=MAX_SAMPLES)

    def batch(self, size: int, max_size: int) -> None:
        """Note a batch of ``size`` requests formed where at most ``max_size`` fit."""
        now = self._clock()
        self._batches.append((now, size / max_size))
        self._trim(now)

    def started(self) -> float:
        """Note a request's arrival; returns its start time for :meth:`finished`."""
        now = self._clock()
        self._arrivals.append(now)
        self._in_flight += 1
        self._trim(now)
        return now

    def finished(self, start: float) -> None:
        """Note that the request started at ``start`` finished."""
        now = self._clock()
        latency = now - start
        self._done.append((now, latency))
        # A replica serving k requests at once spends 1/k of its time on each.
        self._busy.append((now, latency / max(1, self._in_flight)))
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
        for q in (self._done, self._busy, self._batches):
            while q and q[0][0] < horizon:
                q.popleft()

    def snapshot(self) -> dict[str, float]:
        """p50 and p95 latency (ms, over the latency window), arrival rate (req/s), error rate
        (failed req/s), service time (ms per request) and batch fill (mean batch size over the
        most that fit, batched nodes only) over the rate window, and requests in the replica
        now; a metric with no data (or no error) is left out."""
        now = self._clock()
        self._trim(now)
        out: dict[str, float] = {}
        recent = sorted(lat for t, lat in self._done if t >= now - self.latency_window_s)
        if recent:
            out[P50_MS] = 1000.0 * recent[min(len(recent) - 1, math.ceil(0.5 * len(recent)) - 1)]
            out[P95_MS] = 1000.0 * recent[min(len(recent) - 1, math.ceil(0.95 * len(recent)) - 1)]
        arrivals = sum(1 for t in self._arrivals if t >= now - self.rate_window_s)
        out[ARRIVAL_RATE] = arrivals / self.rate_window_s
        errors = sum(1 for t in self._errors if t >= now - self.rate_window_s)
        if errors:
            out[ERROR_RATE] = errors / self.rate_window_s
        busy = [b for t, b in self._busy if t >= now - self.rate_window_s]
        if busy:
            out[SERVICE_TIME_MS] = 1000.0 * sum(busy) / len(busy)
        out[QUEUE_LEN] = float(self._in_flight)
        fills = [f for t, f in self._batches if t >= now - self.rate_window_s]
        if fills:
            out[BATCH_FILL] = sum(fills) / len(fills)
        return out
