"""The vLLM engine's own load signals, for the autoscaler (:class:`EngineSignals`).

vLLM calls a stat logger after each engine step with its scheduler's state: the requests
waiting for a slot in the running batch and the KV cache's usage. :func:`stat_logger` makes one
that keeps the latest in an :class:`EngineSignals`, which also keeps the time to first token of
recent streamed calls. The node's replica reports them through ``record_autoscaling_stats``
(``autoscale.stats``: ``engine_waiting``, ``kv_cache_usage``, ``ttft_p95_ms``), where the
policy reads them (``autoscale.policy``).

Pure but for :func:`stat_logger`, which imports vLLM.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from autoscale.stats import ENGINE_WAITING, KV_CACHE_USAGE, MAX_SAMPLES, TTFT_P95_MS, nearest_rank

__all__ = ["EngineSignals", "stat_logger"]


class EngineSignals:
    """The engine's latest scheduler state and the recent times to first token.

    Args:
        window_s: window of the time-to-first-token p95.
        clock: monotonic clock in seconds; inject a fake one in tests.
    """

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self._clock = clock
        self.waiting = 0
        self.running = 0
        self.kv_cache_usage = 0.0
        self._ttft: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)

    def scheduler(self, waiting: int, running: int, kv_cache_usage: float) -> None:
        """The scheduler's state after an engine step."""
        self.waiting, self.running = int(waiting), int(running)
        self.kv_cache_usage = float(kv_cache_usage)

    def first_token(self, seconds: float) -> None:
        """A streamed call got its first token ``seconds`` after it started."""
        now = self._clock()
        self._ttft.append((now, seconds))
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._ttft and self._ttft[0][0] < now - self.window_s:
            self._ttft.popleft()

    def snapshot(self) -> dict[str, float]:
        """Requests waiting in the scheduler, KV-cache usage (0..1) and, when streamed calls
        started in the window, their p95 time to first token (ms)."""
        now = self._clock()
        self._trim(now)
        out = {ENGINE_WAITING: float(self.waiting), KV_CACHE_USAGE: self.kv_cache_usage}
        recent = sorted(s for _, s in self._ttft)
        if recent:
            out[TTFT_P95_MS] = 1000.0 * nearest_rank(recent, 0.95)
        return out


def stat_logger(signals: EngineSignals) -> Any:
    """A vLLM stat-logger factory (``AsyncLLM(stat_loggers=[...])``) that keeps the
    scheduler's state in ``signals``."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class SignalLogger(StatLoggerBase):  # type: ignore[misc]
        def __init__(self, vllm_config: Any, engine_index: int = 0):
            self.engine_index = engine_index

        def record(
            self,
            scheduler_stats: Any,
            iteration_stats: Any,
            mm_cache_stats: Any = None,
            engine_idx: int = 0,
        ) -> None:
            if scheduler_stats is not None:
                signals.scheduler(
                    scheduler_stats.num_waiting_reqs,
                    scheduler_stats.num_running_reqs,
                    scheduler_stats.kv_cache_usage,
                )

        def log_engine_initialized(self) -> None:
            pass

    return SignalLogger
