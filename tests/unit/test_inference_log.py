"""The inference log's sinks without Ray: JSONL rotation, the bounded queue that drops and counts,
and CloudEvents POSTed to a real HTTP server (stdlib, in a thread)."""

from __future__ import annotations

import asyncio
import glob
import http.server
import json
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from graphs.inference_log import (
    EVENT_TYPES,
    EventLog,
    HttpSink,
    RotatingJsonl,
    cloud_event,
    sampled,
)


def event(i: int, kind: str = "request") -> dict[str, Any]:
    return cloud_event(kind, "/g/ingress", f"req-{i}", {"i": i, "pad": "x" * 200})


def test_jsonl_files_rotate_and_keep_their_backups(tmp_path: str) -> None:
    sink = RotatingJsonl(str(tmp_path), "g-r1", max_bytes=1024, backups=2)
    assert sink.write([event(i) for i in range(40)]) == 40
    files = sorted(glob.glob(os.path.join(tmp_path, "g-r1.jsonl*")))
    assert [os.path.basename(f) for f in files] == ["g-r1.jsonl", "g-r1.jsonl.1", "g-r1.jsonl.2"]
    assert all(os.path.getsize(f) <= 1024 for f in files)
    lines = [json.loads(line) for f in files for line in open(f)]
    # the newest lines survive; the oldest went with rotation
    ids = sorted(line["data"]["i"] for line in lines)
    assert ids == list(range(40 - len(ids), 40)) and len(ids) < 40
    first = json.loads(open(files[0]).readline())
    assert first["specversion"] == "1.0" and first["type"] == EVENT_TYPES["request"]
    assert first["id"].startswith("req-") and first["requestid"].startswith("req-")


def test_no_backups_starts_the_file_over(tmp_path: str) -> None:
    sink = RotatingJsonl(str(tmp_path), "g", max_bytes=1024, backups=0)
    sink.write([event(i) for i in range(10)])
    assert os.listdir(tmp_path) == ["g.jsonl"]
    assert os.path.getsize(os.path.join(tmp_path, "g.jsonl")) <= 1024


class _Memory:
    def __init__(self, fail: bool = False):
        self.events: list[dict[str, Any]] = []
        self.fail = fail

    def write(self, events: list[dict[str, Any]]) -> int:
        if self.fail:
            raise OSError("disk full")
        self.events.extend(events)
        return len(events)


def test_the_queue_is_bounded_and_counts_what_it_drops() -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any], list[int]]:
        memory = _Memory()
        log = EventLog(memory, capacity=3, render=lambda r: [event(r), event(r, "response")])
        for i in range(5):
            log.put(i, events=2)  # never waits: the last two do not fit
        before = log.describe()
        task = asyncio.create_task(log.drain())
        while log.pending:
            await asyncio.sleep(0.01)
        task.cancel()
        return before, log.describe(), [e["data"]["i"] for e in memory.events]

    before, after, written = asyncio.run(scenario())
    assert before == {"sink": None, "written": 0, "dropped": 4, "failed": 0, "pending": 6}
    assert after == {"sink": None, "written": 6, "dropped": 4, "failed": 0, "pending": 0}
    assert written == [0, 0, 1, 1, 2, 2]


def test_a_failing_sink_is_counted_and_the_log_goes_on() -> None:
    async def scenario() -> dict[str, Any]:
        log = EventLog(_Memory(fail=True), capacity=10)
        task = asyncio.create_task(log.drain())
        log.put(event(1))
        log.put(event(2))
        while log.pending:
            await asyncio.sleep(0.01)
        task.cancel()
        return log.describe()

    assert asyncio.run(scenario())["failed"] == 2


def test_sampling_follows_the_request_id() -> None:
    ids = [f"id-{i}" for i in range(2000)]
    picked = [i for i in ids if sampled(i, 0.25)]
    assert 400 < len(picked) < 600
    assert picked == [i for i in ids if sampled(i, 0.25)]  # the same decision every time
    assert all(sampled(i, 1.0) for i in ids[:10])


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Collector.received = []
    _Collector.status = 200
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/events"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_structured_cloudevents_reach_an_http_sink(server: str) -> None:
    sent = cloud_event("response", "/g/ingress", "req-7", {"latency_ms": 3.5})
    assert HttpSink(server).write([sent]) == 1
    [(headers, body)] = _Collector.received
    assert headers["content-type"] == "application/cloudevents+json; charset=utf-8"
    assert json.loads(body) == sent
    assert sent["type"] == "org.servegraph.inference.response" and sent["id"] == "req-7.response"


def test_binary_cloudevents_carry_ce_headers(server: str) -> None:
    sent = cloud_event("feedback", "/g/ingress", "req-8", {"reward": 1.0})
    assert HttpSink(server, mode="binary").write([sent]) == 1
    [(headers, body)] = _Collector.received
    assert json.loads(body) == {"reward": 1.0}
    assert headers["content-type"] == "application/json"
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-type"] == "org.servegraph.inference.feedback"
    assert headers["ce-source"] == "/g/ingress" and headers["ce-requestid"] == "req-8"
    assert headers["ce-id"] == sent["id"] and headers["ce-time"] == sent["time"]


def test_a_sink_that_answers_an_error_counts_as_failed(server: str) -> None:
    _Collector.status = 500
    assert HttpSink(server, timeout_s=5).write([event(1), event(2)]) == 0
    assert len(_Collector.received) == 2
    closed = HttpSink("http://127.0.0.1:9/nothing-listens", timeout_s=1)
    assert closed.write([event(3)]) == 0
