"""Gauges that stay on Ray's metrics endpoint between changes: :func:`keep_gauge`.

Ray exports a gauge series only while it is set again: the metrics agent drops a series not
refreshed within two export intervals. A gauge that changes only now and then (a breaker's
state, calls in flight after the traffic stopped, a canary's stage) would vanish from the
endpoint between changes; :func:`keep_gauge` sets it and a daemon thread sets every kept series
again each second. Series are few (one per node, arm or router): memory is bounded by labels.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

__all__ = ["REFRESH_S", "keep_gauge"]

log = logging.getLogger(__name__)

#: How often every kept series is set again (Ray's export interval is at least 1 s).
REFRESH_S = 1.0


class _Kept:
    def __init__(self) -> None:
        self.series: dict[tuple[int, tuple[tuple[str, str], ...]], tuple[Any, float]] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def set(self, gauge: Any, value: float, tags: dict[str, str]) -> None:
        gauge.set(value, tags=dict(tags))  # a copy: Ray Serve adds its tags to the dict given
        with self.lock:
            self.series[(id(gauge), tuple(sorted(tags.items())))] = (gauge, value)
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._refresh, name="servegraph-gauges", daemon=True
                )
                self.thread.start()

    def _refresh(self) -> None:
        while True:
            time.sleep(REFRESH_S)
            with self.lock:
                kept = list(self.series.items())
            for (_, tags), (gauge, value) in kept:
                try:
                    gauge.set(value, tags=dict(tags))
                except Exception as exc:  # a metric must never stop the others
                    log.debug("gauge not refreshed (%r)", exc)


_KEPT = _Kept()


def keep_gauge(gauge: Any, value: float, tags: dict[str, str]) -> None:
    """Set ``gauge`` to ``value`` for ``tags`` and keep the series on the endpoint (see the
    module doc) until it is set again."""
    _KEPT.set(gauge, value, tags)
