"""A closed-loop HTTP load client that records every request, for the chaos scenarios.

Unlike the benchmarks' ``loadgen.run`` (latencies and an error count), each request becomes a
:class:`Rec`: when it started and ended (``time.monotonic()``, the clock the fault injectors
stamp their faults with), its status, and how it failed (a connection error, a timeout, or the
HTTP status with the body's ``error``), with the request id the graph answered. A run goes on in
a thread of its own (its own event loop), so the driver injects faults meanwhile.

With ``feedback``, every answer the function returns a reward for is rewarded at once
(``POST /<graph>/feedback`` with its ``feedback_token``), recorded as ``kind="feedback"``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

#: Client timeout (s): longer than any graph deadline the scenarios set, so a late answer is
#: the graph's 504, never the client giving up.
CLIENT_TIMEOUT_S = 60.0


@dataclass
class Rec:
    """One request as the client saw it."""

    kind: str  # predict | feedback
    start: float  # time.monotonic()
    end: float
    status: int | None  # None: no HTTP answer
    error: str | None = None  # None: 200; else e.g. "conn:RemoteProtocolError", "HTTP 504"
    request_id: str | None = None
    served_by: list[str] | None = None
    detail: str | None = None  # the error body's error/node/detail, or the exception text
    notes: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _error_of(r: httpx.Response) -> tuple[str, str]:
    """``("HTTP <status>", detail)`` for a non-200 answer: its JSON body's error, node and
    detail, else its text with the headers that tell who answered; and its ``Retry-After``."""
    retry = r.headers.get("retry-after")
    extra = f" [Retry-After: {retry}]" if retry is not None else ""
    try:
        body = r.json()
    except (json.JSONDecodeError, ValueError):
        who = ", ".join(
            f"{k}: {r.headers[k]}" for k in ("content-type", "server") if k in r.headers
        )
        return f"HTTP {r.status_code}", f"{r.text[:120]!r} (not JSON; {who or 'no headers'}){extra}"
    if isinstance(body, Mapping):
        parts = [str(body.get(k)) for k in ("error", "node", "detail") if body.get(k)]
        return f"HTTP {r.status_code}", " | ".join(parts)[:300] + extra
    return f"HTTP {r.status_code}", str(body)[:200] + extra


def _exception_kind(exc: BaseException) -> str:
    """``timeout:<Name>`` for the client's timeouts, ``conn:<Name>`` for every other failure
    to get an answer (refused, reset, dropped mid-answer)."""
    prefix = "timeout" if isinstance(exc, httpx.TimeoutException) else "conn"
    return f"{prefix}:{type(exc).__name__}"


class Load:
    """``concurrency`` callers posting ``body`` to ``url`` back to back until :meth:`stop`.

    Args:
        url: the graph's ``/predict`` URL.
        body: the request body.
        concurrency: callers at once (each waits for its answer before sending again).
        feedback: maps a 200 answer's JSON to a reward (None: no feedback for it).
        feedback_url: where rewards go (default: ``url`` with ``/predict`` -> ``/feedback``).
    """

    def __init__(
        self,
        url: str,
        body: Any,
        concurrency: int,
        *,
        feedback: Callable[[Mapping[str, Any]], float | None] | None = None,
        feedback_url: str | None = None,
    ):
        self.url = url
        self.body = body
        self.concurrency = concurrency
        self.feedback = feedback
        self.feedback_url = feedback_url or url.rsplit("/predict", 1)[0] + "/feedback"
        self.records: list[Rec] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at = 0.0
        self.stopped_at = 0.0

    # --- one request -------------------------------------------------------------------------

    async def _post(self, client: httpx.AsyncClient, kind: str, url: str, body: Any) -> Rec:
        start = time.monotonic()
        try:
            r = await client.post(url, json=body)
        except Exception as exc:  # every failure to get an answer is a record, never raised
            return Rec(
                kind,
                start,
                time.monotonic(),
                None,
                _exception_kind(exc),
                None,
                None,
                str(exc)[:200],
            )
        end = time.monotonic()
        rid = r.headers.get("x-request-id")
        if r.status_code != 200:
            error, detail = _error_of(r)
            return Rec(kind, start, end, r.status_code, error, rid, None, detail)
        try:
            answer = r.json()
        except ValueError:
            return Rec(kind, start, end, 200, "bad body", rid, None, r.text[:200])
        rec = Rec(kind, start, end, 200, None, rid or answer.get("request_id"))
        if kind == "predict":
            rec.served_by = answer.get("served_by")
            rec.notes = answer.get("notes") or None
            rec.detail = answer.get("feedback_token")  # kept for the feedback that follows
        return rec

    async def _caller(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            rec = await self._post(client, "predict", self.url, self.body)
            token, rec.detail = (rec.detail, None) if rec.ok else (None, rec.detail)
            self.records.append(rec)
            if self.feedback is None or not rec.ok or not token:
                continue
            reward = self.feedback({"served_by": rec.served_by, "notes": rec.notes})
            if reward is not None:
                body = {"token": token, "reward": reward}
                fb = await self._post(client, "feedback", self.feedback_url, body)
                fb.served_by = rec.served_by
                self.records.append(fb)

    async def _run(self) -> None:
        limits = httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency
        )
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S, limits=limits) as client:
            await asyncio.gather(*(self._caller(client) for _ in range(self.concurrency)))

    # --- the run -------------------------------------------------------------------------------

    def start(self) -> Load:
        """Start the callers in a thread of their own; returns at once."""
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Rec]:
        """Stop sending (requests in flight finish); every record, in completion order."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=CLIENT_TIMEOUT_S + 10)
        self.stopped_at = time.monotonic()
        return self.records

    def run_for(self, seconds: float) -> list[Rec]:
        """:meth:`start`, wait ``seconds``, :meth:`stop`."""
        self.start()
        time.sleep(seconds)
        return self.stop()
