"""``servegraph bench``: a short load against a real local HTTP server (no Ray)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from graphs.cli import main
from graphs.cli_bench import percentile, predict_url


class _Graph(BaseHTTPRequestHandler):
    """A graph-like server: /g/graph describes one input; /g/predict answers, every 4th with 500."""

    protocol_version = "HTTP/1.1"
    calls = 0
    bodies: list[Any] = []
    lock = threading.Lock()

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        graph = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]}
        self._send(200, graph) if self.path == "/g/graph" else self._send(404, {"detail": "no"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with _Graph.lock:
            _Graph.calls += 1
            _Graph.bodies.append(body)
            fail = _Graph.calls % 4 == 0
        self._send(500 if fail else 200, {"outputs": {}})


@pytest.fixture
def server() -> Iterator[str]:
    _Graph.calls, _Graph.bodies = 0, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Graph)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/g"
    httpd.shutdown()
    httpd.server_close()


def test_bench_sends_n_requests_and_counts_failures(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", server, "-n", "40", "-c", "4", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1  # some requests failed
    assert report["requests"] == 40 and report["statuses"] == {"200": 30, "500": 10}
    assert report["ok"] == 30 and report["errors"] == 10 and report["throughput_rps"] > 0
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    # without --data: zeros shaped as the graph's inputs, one row
    assert _Graph.bodies[0] == {"inputs": {"x": [[0.0, 0.0, 0.0]]}}


def test_bench_draws_a_progress_bar_and_a_readable_summary(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", f"{server}/predict", "-n", "3", "-c", "1", "--data", '{"inputs": [1]}'])
    out, err = capsys.readouterr()
    assert code == 0 and _Graph.bodies == [{"inputs": [1]}] * 3
    assert err.startswith("\r[") and "3 requests, 0 errors" in err and err.endswith("\n")
    assert "3 requests in" in out and "throughput" in out and "p99" in out


def test_bench_of_an_unreachable_server_is_one_line_and_exit_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["bench", f"http://127.0.0.1:{port}/g", "-n", "2", "-q", "--data", "{}"])
    err = capsys.readouterr().err
    assert code == 3 and len(err.strip().splitlines()) == 1 and "cannot reach" in err


def test_predict_url_and_percentile() -> None:
    assert predict_url("http://h:8000/digits/") == "http://h:8000/digits/predict"
    assert predict_url("http://h/digits/predict") == "http://h/digits/predict"
    assert percentile([], 0.5) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.99) == 4.0
