"""What every scenario does: deploy a graph, drive load while faults fire on a schedule, sample
the cluster meanwhile, read ``GET /<graph>/graph``, and judge the result."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import _harness as h

from . import analysis
from .apps import BODY
from .client import Load, Rec

#: Seconds of load before the first fault (at least): connections, handles and router state
#: are warm, and failures before it are the graph's own.
LEAD_MIN_S = 4.0


def log(msg: str) -> None:
    print(f"[chaos] {msg}", file=sys.stderr, flush=True)


def url(app: str, path: str = "predict") -> str:
    return f"{h.BASE_URL}/{app}/{path}"


def deploy(app_obj: Any, name: str) -> str:
    """``serve.run`` the application at ``/<name>``, wait until it answers; its predict URL."""
    from ray import serve

    t0 = time.monotonic()
    serve.run(app_obj, name=name, route_prefix=f"/{name}")
    h.wait_ready(url(name), BODY, timeout_s=120)
    log(f"{name}: deployed and answering in {time.monotonic() - t0:.0f}s")
    return url(name)


def undeploy(name: str) -> None:
    from ray import serve

    with contextlib.suppress(Exception):
        serve.delete(name)


def warm(target: str, concurrency: int, seconds: float = 3.0, **load: Any) -> list[Rec]:
    """Load that is not measured (connections, handle routers, router state sync)."""
    return Load(target, BODY, concurrency, **load).run_for(seconds)


def graph_view(app: str) -> dict[str, Any]:
    """``GET /<app>/graph`` (the serving replica syncs its router figures first)."""
    import httpx

    return dict(httpx.get(url(app, "graph"), timeout=30).json())


def node_view(view: dict[str, Any], name: str) -> dict[str, Any]:
    for node in view.get("nodes", []):
        if node.get("name") == name:
            return dict(node)
    return {}


class Sampler:
    """Calls ``probe`` every ``every_s`` in a thread; ``samples`` holds ``(monotonic time,
    value)`` (an exception's repr as the value when the probe fails)."""

    def __init__(self, probe: Callable[[], Any], every_s: float = 0.5):
        self.probe = probe
        self.every_s = every_s
        self.samples: list[tuple[float, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                value = self.probe()
            except Exception as exc:  # a failed probe is a sample too
                value = {"probe_error": repr(exc)[:200]}
            self.samples.append((t, value))
            self._stop.wait(self.every_s)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def drive(
    target: str,
    concurrency: int,
    seconds: float,
    schedule: Sequence[tuple[float, str, Callable[[], dict[str, Any]]]],
    **load: Any,
) -> tuple[list[Rec], list[dict[str, Any]], float]:
    """Load ``target`` for ``seconds`` while ``schedule``'s faults fire: ``(offset_s, name,
    inject)``, each ``inject()`` returning what it did with ``at`` (its monotonic time; the
    moment it was called when missing). Returns the records, the faults (``t_s``: seconds
    after the load started) and the load's start time."""
    run = Load(target, BODY, concurrency, **load).start()
    t0 = run.started_at
    faults: list[dict[str, Any]] = []
    try:
        for offset, name, inject in sorted(schedule, key=lambda s: s[0]):
            time.sleep(max(0.0, t0 + offset - time.monotonic()))
            called = time.monotonic()
            try:
                done = dict(inject())
            except Exception as exc:  # the scenario reports a fault that could not be injected
                done = {"error": repr(exc)[:300]}
            done.setdefault("at", called)
            done["name"] = name
            done["t_s"] = round(done["at"] - t0, 3)
            faults.append(done)
            log(f"t={done['t_s']:.1f}s {name}: {_brief(done)}")
        time.sleep(max(0.0, t0 + seconds - time.monotonic()))
    finally:
        records = run.stop()
    return records, faults, t0


def fault_times(
    faults: Sequence[dict[str, Any]], kinds: Sequence[str] | None = None
) -> list[float]:
    """Monotonic times of the faults (``kinds``: only those names) that did not fail."""
    return [f["at"] for f in faults if "error" not in f and (kinds is None or f["name"] in kinds)]


def summary(
    records: Sequence[Rec], faults: Sequence[float], t0: float, **kw: Any
) -> dict[str, Any]:
    """:func:`analysis.summarize` with failure times counted from the load's start."""
    return analysis.summarize(records, faults, origin=t0, **kw)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _brief(done: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in done.items() if k not in ("at", "name", "t_s"))[:300]
