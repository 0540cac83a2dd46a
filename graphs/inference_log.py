"""The inference log: sampled request/response pairs and their rewards as CloudEvents.

Like KServe's logger, each event is a CloudEvent (spec 1.0) of type
``org.servegraph.inference.request``, ``.response`` or ``.feedback`` whose source is
``/<graph>/<replica>`` and whose ``requestid`` extension is the request id. Events go to rotating
JSONL files (one per ingress replica) or are POSTed to an HTTP sink, in structured
(``application/cloudevents+json``) or binary (``ce-*`` headers) mode. :class:`EventLog` is the
bounded queue in front of a sink: putting never blocks, a full queue drops and counts, and one
background task writes. No Ray here: the sinks work in any process.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import urllib.request
import uuid
import zlib
from collections.abc import Callable
from typing import Any, Protocol

from nodes.observe_spec import InferenceLogSpec

__all__ = [
    "EVENT_TYPES",
    "EventLog",
    "HttpSink",
    "RotatingJsonl",
    "Sink",
    "cloud_event",
    "sampled",
    "sink_for",
]

log = logging.getLogger(__name__)

#: CloudEvents ``type`` of each kind of event.
EVENT_TYPES = {
    "request": "org.servegraph.inference.request",
    "response": "org.servegraph.inference.response",
    "feedback": "org.servegraph.inference.feedback",
}


def sampled(request_id: str, rate: float) -> bool:
    """Whether a request is logged: decided by its id, so every replica that sees the request
    (or its feedback) decides alike."""
    return rate >= 1.0 or zlib.crc32(request_id.encode()) < rate * 2**32


def cloud_event(kind: str, source: str, request_id: str, data: Any) -> dict[str, Any]:
    """A structured-mode CloudEvent (spec 1.0) of ``kind`` (request, response or feedback)."""
    return {
        "specversion": "1.0",
        "id": f"{request_id}.{kind}" if kind != "feedback" else uuid.uuid4().hex,
        "source": source,
        "type": EVENT_TYPES[kind],
        "time": datetime.datetime.now(datetime.UTC).isoformat(),
        "datacontenttype": "application/json",
        "requestid": request_id,
        "data": data,
    }


class Sink(Protocol):
    """Where events go; ``write`` runs in a worker thread, never on the event loop."""

    def write(self, events: list[dict[str, Any]]) -> int:
        """Write ``events``; returns how many were written (the rest failed)."""
        ...


class RotatingJsonl:
    """JSONL files ``<folder>/<name>.jsonl``, rotated to ``.1`` .. ``.<backups>`` at
    ``max_bytes`` (the oldest is deleted)."""

    def __init__(self, folder: str, name: str, max_bytes: int, backups: int):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, f"{name}.jsonl")
        self.max_bytes = max_bytes
        self.backups = backups

    def _rotate(self) -> None:
        if self.backups == 0:
            os.remove(self.path)
            return
        for i in range(self.backups - 1, 0, -1):
            older = f"{self.path}.{i}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{i + 1}")
        os.replace(self.path, f"{self.path}.1")

    def write(self, events: list[dict[str, Any]]) -> int:
        for event in events:
            line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
            size = os.path.getsize(self.path) if os.path.exists(self.path) else 0
            if size and size + len(line) > self.max_bytes:
                self._rotate()
            with open(self.path, "ab") as f:
                f.write(line)
        return len(events)


class HttpSink:
    """POSTs each event to ``url``: structured mode (the event as
    ``application/cloudevents+json``) or binary mode (``ce-*`` headers, the data as body)."""

    def __init__(self, url: str, mode: str = "structured", timeout_s: float = 2.0):
        self.url = url
        self.mode = mode
        self.timeout_s = timeout_s

    def request(self, event: dict[str, Any]) -> urllib.request.Request:
        """The HTTP request that carries ``event``."""
        if self.mode == "structured":
            body = json.dumps(event).encode()
            headers = {"Content-Type": "application/cloudevents+json; charset=utf-8"}
        else:
            body = json.dumps(event["data"]).encode()
            headers = {"Content-Type": event["datacontenttype"]}
            attributes = {k: v for k, v in event.items() if k not in ("data", "datacontenttype")}
            headers.update({f"ce-{k}": str(v) for k, v in attributes.items()})
        return urllib.request.Request(self.url, data=body, headers=headers, method="POST")

    def write(self, events: list[dict[str, Any]]) -> int:
        written = 0
        for event in events:
            try:
                with urllib.request.urlopen(self.request(event), timeout=self.timeout_s) as reply:
                    reply.read()
                written += 1
            except OSError as exc:  # URLError and HTTPError (a non-2xx answer) included
                log.warning("inference log: POST to %s failed: %r", self.url, exc)
        return written


def sink_for(spec: InferenceLogSpec, name: str) -> Sink:
    """The sink ``spec`` names; ``name`` names this replica's JSONL file."""
    if spec.path is not None:
        return RotatingJsonl(spec.path, name, spec.max_bytes, spec.backups)
    return HttpSink(spec.url or "", spec.mode, spec.timeout_s)


class EventLog:
    """A bounded queue of records in front of a sink, drained by :meth:`drain`.

    Args:
        sink: where events go.
        capacity: most records waiting; beyond it :meth:`put` drops them and counts their events.
        render: a record's events, called in the writer's thread (off the event loop).
    """

    def __init__(
        self,
        sink: Sink,
        capacity: int,
        render: Callable[[Any], list[dict[str, Any]]] = lambda record: [record],
    ):
        self.sink = sink
        self.render = render
        self._queue: asyncio.Queue[tuple[Any, int]] = asyncio.Queue(capacity)
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self.pending = 0

    def put(self, record: Any, events: int = 1) -> None:
        """Queue ``record`` (which renders to ``events`` events) without ever waiting; when the
        queue is full it is dropped and its events counted."""
        try:
            self._queue.put_nowait((record, events))
            self.pending += events
        except asyncio.QueueFull:
            self.dropped += events

    def _write(self, batch: list[tuple[Any, int]]) -> int:
        return self.sink.write([event for record, _ in batch for event in self.render(record)])

    async def drain(self) -> None:
        """Write queued records as they come, in batches, until cancelled."""
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 256:
                batch.append(self._queue.get_nowait())
            events = sum(n for _, n in batch)
            try:
                written = await asyncio.to_thread(self._write, batch)
            except Exception as exc:  # a broken sink or record must not end the log
                log.warning("inference log: write failed: %r", exc)
                written = 0
            self.pending -= events
            self.written += written
            self.failed += events - written

    def describe(self) -> dict[str, Any]:
        """Events since this replica started: written, dropped (queue full), failed (sink
        errors), pending; and where they go."""
        where = getattr(self.sink, "path", None) or getattr(self.sink, "url", None)
        return {
            "sink": where,
            "written": self.written,
            "dropped": self.dropped,
            "failed": self.failed,
            "pending": self.pending,
        }
