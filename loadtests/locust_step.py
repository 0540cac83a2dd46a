"""Locust step load for the live autoscaling scenario (``autoscale_live.py``).

Closed-loop users post ``{"inputs": {"x": [1.0]}}`` back to back (no wait) to one graph's
``/predict``; :class:`StepShape` holds ``STEP_LOW_USERS`` users for ``STEP_LOW_S`` seconds,
steps to ``STEP_HIGH_USERS`` for ``STEP_HIGH_S`` seconds, drops back to the low count for
``STEP_TAIL_S`` seconds and stops, so a headless run is bounded::

    STEP_PATH=/as_ours/predict locust -f loadtests/locust_step.py --headless \\
        --host http://127.0.0.1:8100 --csv /tmp/step --csv-full-history --only-summary

Environment (defaults in brackets): ``STEP_PATH`` [/autoscale/predict], ``STEP_LOW_USERS`` [2],
``STEP_HIGH_USERS`` [24], ``STEP_LOW_S`` [20], ``STEP_HIGH_S`` [45], ``STEP_TAIL_S`` [40],
``STEP_SPAWN_RATE`` [100 users/s: the step is a step]. Locust's own stats keep a percentile
only over a 10 s rolling window, so two optional outputs give exact per-second figures:
``STEP_REQUEST_LOG`` (CSV ``end_s,latency_ms,ok`` per request, wall-clock seconds) and
``STEP_PHASES_OUT`` (JSON: wall-clock start of the shape and of each phase).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from locust import FastHttpUser, LoadTestShape, constant, events, task


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


PATH = os.environ.get("STEP_PATH", "/autoscale/predict")
LOW_USERS = int(_env("STEP_LOW_USERS", 2))
HIGH_USERS = int(_env("STEP_HIGH_USERS", 24))
LOW_S = _env("STEP_LOW_S", 20)
HIGH_S = _env("STEP_HIGH_S", 45)
TAIL_S = _env("STEP_TAIL_S", 40)
SPAWN_RATE = _env("STEP_SPAWN_RATE", 100)
REQUEST_LOG = os.environ.get("STEP_REQUEST_LOG")
PHASES_OUT = os.environ.get("STEP_PHASES_OUT")
BODY = {"inputs": {"x": [1.0]}}

#: (phase name, end of the phase in seconds since the shape started, users).
STAGES = (
    ("low", LOW_S, LOW_USERS),
    ("high", LOW_S + HIGH_S, HIGH_USERS),
    ("tail", LOW_S + HIGH_S + TAIL_S, LOW_USERS),
)

_requests: list[tuple[float, float, int]] = []
_phases: dict[str, Any] = {"stages": [list(s) for s in STAGES], "phase_start": {}}


class StepUser(FastHttpUser):
    """Posts to the graph's ``/predict`` back to back and checks the answer."""

    wait_time = constant(0)
    network_timeout = 60.0
    connection_timeout = 10.0

    @task
    def predict(self) -> None:
        with self.client.post(PATH, json=BODY, name=PATH, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
            elif "outputs" not in (resp.json() or {}):
                resp.failure(f"no outputs in {(resp.text or '')[:200]}")


class StepShape(LoadTestShape):
    """low -> high -> low, then stop."""

    def tick(self) -> tuple[int, float] | None:
        run = self.get_run_time()
        if "t0" not in _phases:
            _phases["t0"] = time.time() - run
        for name, end, users in STAGES:
            if run < end:
                _phases["phase_start"].setdefault(name, time.time())
                return users, SPAWN_RATE
        return None


@events.request.add_listener
def _on_request(
    response_time: float,
    exception: BaseException | None,
    start_time: float | None = None,
    **_: Any,
) -> None:
    if REQUEST_LOG is None:
        return
    end = (start_time + response_time / 1000.0) if start_time else time.time()
    _requests.append((end, response_time, 0 if exception else 1))


def _write_outputs() -> None:
    if REQUEST_LOG is not None:
        with open(REQUEST_LOG, "w", encoding="utf-8") as f:
            f.write("end_s,latency_ms,ok\n")
            f.writelines(f"{e:.4f},{lat:.2f},{ok}\n" for e, lat, ok in _requests)
    if PHASES_OUT is not None:
        with open(PHASES_OUT, "w", encoding="utf-8") as f:
            json.dump(_phases, f)


@events.test_stop.add_listener
def _on_test_stop(**_: Any) -> None:
    _write_outputs()


@events.quitting.add_listener
def _on_quitting(**_: Any) -> None:
    _write_outputs()
