"""The simulated node: replicas serving one FIFO queue, and what its metrics look like to each
policy.

- :class:`SimulatedNode`: replicas (a new one serves only after ``startup_s``; a removed one
  finishes what it is serving), the queue (Ray Serve's handle-side queue, with ideal routing),
  every request's start and finish, and the :class:`~autoscale.metrics.NodeMetrics` replicas
  would report.
- :class:`RayMetricPipeline`: Ray's metric pipeline for its default policy: periodic samples,
  periodic pushes and the look-back time average.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from autoscale.metrics import NodeMetrics
from autoscale.ray_default import RayDefaultConfig

__all__ = ["RayMetricPipeline", "SimulatedNode"]


class SimulatedNode:
    """Replicas, the FIFO queue and the record of every request's start and finish.

    Each replica serves ``slots`` requests at once (a node that waits on I/O and takes
    ``max_ongoing_requests`` of them; 1 for a node that computes, one at a time).
    """

    def __init__(
        self, arrivals: np.ndarray, service: np.ndarray, startup_s: float, slots: int = 1
    ) -> None:
        self.arr, self.svc, self.startup_s, self.slots = arrivals, service, startup_s, slots
        self.start = np.full(arrivals.size, np.inf)
        self.finish = np.full(arrivals.size, np.inf)
        self.head = 0  # first request not yet started (FIFO)
        self.max_svc = float(service.max()) if service.size else 0.0
        self.free: dict[int, float] = {}  # live slot -> when it is next free
        self.ready: dict[int, float] = {}  # live replica -> when it starts serving
        self.heap: list[tuple[float, int]] = []
        self.next_id = 0

    @property
    def replicas(self) -> int:
        return len(self.ready)

    def running(self, now: float) -> int:
        return sum(1 for r in self.ready.values() if r <= now)

    def _slots(self, rid: int) -> range:
        return range(rid * self.slots, (rid + 1) * self.slots)

    def scale_to(self, n: int, now: float) -> None:
        while len(self.ready) < n:
            rid, self.next_id = self.next_id, self.next_id + 1
            self.ready[rid] = now + self.startup_s
            for slot in self._slots(rid):
                self.free[slot] = self.ready[rid]
                heapq.heappush(self.heap, (self.free[slot], slot))
        if len(self.ready) > n:
            # Remove replicas still starting, then the ones that free up first.
            def order(r: int) -> tuple[bool, float]:
                return (self.ready[r] <= now, max(self.free[s] for s in self._slots(r)))

            for rid in sorted(self.ready, key=order)[: len(self.ready) - n]:
                del self.ready[rid]
                for slot in self._slots(rid):
                    del self.free[slot]

    def serve_until(self, t_end: float) -> None:
        """Start every queued request that can start before ``t_end``."""
        arr, heap = self.arr, self.heap
        stop = int(np.searchsorted(arr, t_end, side="left"))
        while self.head < stop and heap:
            free_at, rid = heap[0]
            if self.free.get(rid) != free_at:
                heapq.heappop(heap)  # removed replica or stale entry
                continue
            begin = max(arr[self.head], free_at)
            if begin >= t_end:
                break
            done = begin + self.svc[self.head]
            self.start[self.head], self.finish[self.head] = begin, done
            self.free[rid] = done
            heapq.heapreplace(heap, (done, rid))
            self.head += 1

    def _first_possible(self, t: float) -> int:
        # Starts are non-decreasing, so requests started before t - max_svc finished by t.
        return int(np.searchsorted(self.start[: self.head], t - self.max_svc, side="left"))

    def ongoing(self, times: np.ndarray) -> np.ndarray:
        """Requests arrived and not finished at each of ``times`` (all <= the present)."""
        arrived = np.searchsorted(self.arr, times, side="right")
        lo = self._first_possible(float(times.min()))
        fin = self.finish[lo : self.head]
        done = lo + (fin[:, None] <= times[None, :]).sum(axis=0)
        return (arrived - done).astype(float)

    def queued(self, times: np.ndarray) -> np.ndarray:
        """Requests arrived and not started at each of ``times`` (all <= the present)."""
        arrived = np.searchsorted(self.arr, times, side="right")
        started = np.searchsorted(self.start[: self.head], times, side="right")
        return (arrived - started).astype(float)

    def _finished(self, now: float, window: float) -> tuple[np.ndarray, np.ndarray]:
        """Latencies and service times (s) of the requests finished in the last ``window``."""
        lo = self._first_possible(now - window)
        fin = self.finish[lo : self.head]
        recent = (fin > now - window) & (fin <= now)
        return (fin - self.arr[lo : self.head])[recent], self.svc[lo : self.head][recent]

    def metrics(self, now: float, window: float, rate_window: float) -> NodeMetrics:
        """What the replicas would report at ``now``."""
        window, rate_window = min(window, now), min(rate_window, now)
        samples = now - window + window * (np.arange(10) + 1) / 10
        ongoing = float(self.ongoing(samples).mean())
        queued = float(self.queued(samples).mean())  # a mean over the window, as Ray's
        # A replica times a request from when it starts it: the wait for one is the callers'.
        _, latencies = self._finished(now, window)
        _, service = self._finished(now, rate_window)
        arrived = np.searchsorted(self.arr, [now - rate_window, now], side="right")
        return NodeMetrics(
            current_replicas=self.replicas,
            running_replicas=self.running(now),
            ongoing_requests=ongoing,
            queued_requests=queued,
            p95_ms=float(np.percentile(latencies, 95) * 1000) if latencies.size else None,
            arrival_rate=float(arrived[1] - arrived[0]) / rate_window,
            # What the replicas' Little's-law estimate (autoscale.stats) comes to: a request's
            # time over the requests a replica serves at once.
            service_time_ms=float(service.mean() * 1000 / self.slots) if service.size else None,
        )


class RayMetricPipeline:
    """Ray's metric pipeline: periodic samples, periodic pushes, look-back time average."""

    def __init__(self, config: RayDefaultConfig) -> None:
        self.config = config
        self.samples: list[tuple[float, float]] = []
        self.next_sample = 0.0

    def total_num_requests(self, node: SimulatedNode, now: float) -> float:
        cfg = self.config
        due = []
        while self.next_sample <= now + 1e-9:
            due.append(self.next_sample)
            self.next_sample += cfg.record_interval_s
        if due:
            values = node.ongoing(np.asarray(due))
            self.samples.extend(zip(due, values.tolist()))
        last_push = math.floor(now / cfg.metrics_interval_s + 1e-9) * cfg.metrics_interval_s
        seen = [
            (t, v) for t, v in self.samples if last_push - cfg.look_back_period_s <= t <= last_push
        ]
        self.samples = [s for s in self.samples if s[0] >= last_push - cfg.look_back_period_s]
        if not seen:
            return 0.0
        ends = [t for t, _ in seen[1:]] + [max(now, seen[-1][0] + 1e-3)]
        total = sum(v * (end - t) for (t, v), end in zip(seen, ends))
        return total / (ends[-1] - seen[0][0])
