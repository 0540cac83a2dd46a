"""nodes.llm.engine_stats without vLLM: what an LLM replica reports to the autoscaler."""

from __future__ import annotations

import pytest

from autoscale.stats import ENGINE_WAITING, KV_CACHE_USAGE, TTFT_P95_MS
from nodes.llm.engine_stats import EngineSignals


def test_the_engines_latest_state_and_the_recent_first_tokens() -> None:
    now = [0.0]
    signals = EngineSignals(window_s=5.0, clock=lambda: now[0])
    assert signals.snapshot() == {ENGINE_WAITING: 0.0, KV_CACHE_USAGE: 0.0}
    signals.scheduler(waiting=4, running=8, kv_cache_usage=0.6)
    for ms in range(10, 210, 10):  # 20 streamed calls: 10 ms .. 200 ms to the first token
        signals.first_token(ms / 1000)
    snap = signals.snapshot()
    assert snap[ENGINE_WAITING] == 4.0 and snap[KV_CACHE_USAGE] == 0.6
    assert snap[TTFT_P95_MS] == pytest.approx(190.0)
    now[0] = 6.0  # past the window: no recent first token
    assert TTFT_P95_MS not in signals.snapshot()
