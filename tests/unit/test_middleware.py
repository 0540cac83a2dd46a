"""The ingress's ASGI layers without Ray: error boundary, request gate, fast /predict path."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from graphs.middleware import ErrorBoundary, FastPredict, RequestGate
from nodes.errors import OverloadedError

LIMIT = 100


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers with the body it read, as JSON."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    content = json.dumps({"path": scope["path"], "got": len(body)}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": content})


async def broken_app(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("db password is hunter2")


async def overloaded_app(scope: Any, receive: Any, send: Any) -> None:
    raise OverloadedError("full", retry_after_s=3)


class Ingress:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, dict[str, str]]] = []

    async def predict_bytes(
        self, raw: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        self.calls.append((raw, headers))
        return 200, b'{"ok": true}', {"X-Feedback-Token": "t"}


def request(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def gate(inner: Any = echo_app) -> Any:
    return ErrorBoundary(RequestGate(inner, LIMIT))


JSON = {"content-type": "application/json"}


def test_json_post_within_the_limit_passes() -> None:
    r = request(gate(), "POST", "/predict", content=b"{}", headers=JSON)
    assert r.status_code == 200 and r.json() == {"path": "/predict", "got": 2}


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_non_json_posts_are_refused_with_415(content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = request(gate(), "POST", "/routers/split/weights", content=b"{}", headers=headers)
    assert r.status_code == 415
    assert "application/json" in r.json()["detail"]


def test_json_with_charset_is_json() -> None:
    headers = {"content-type": "application/json; charset=utf-8"}
    assert request(gate(), "POST", "/feedback", content=b"{}", headers=headers).status_code == 200


def test_oip_infer_takes_binary_extension_and_a_missing_type() -> None:
    path = "/v2/models/m/infer"
    binary = {"content-type": "application/octet-stream", "inference-header-content-length": "2"}
    assert request(gate(), "POST", path, content=b"{}xx", headers=binary).status_code == 200
    assert request(gate(), "POST", path, content=b"{}").status_code == 200
    r = request(gate(), "POST", path, content=b"{}", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "error" in r.json()  # OIP error shape


def test_gets_need_no_media_type() -> None:
    assert request(gate(), "GET", "/graph").status_code == 200


def test_body_over_the_limit_by_content_length_is_413() -> None:
    r = request(gate(), "POST", "/predict", content=b"x" * (LIMIT + 1), headers=JSON)
    assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]


def test_chunked_body_over_the_limit_is_413_and_under_it_is_replayed() -> None:
    def chunks(n: int) -> Any:
        async def gen() -> Any:
            for _ in range(n):
                yield b"x" * 30

        return gen()

    r = request(gate(), "POST", "/predict", content=chunks(4), headers=JSON)
    assert r.status_code == 413
    r = request(gate(), "POST", "/predict", content=chunks(3), headers=JSON)
    assert r.status_code == 200 and r.json()["got"] == 90


def test_unexpected_errors_are_json_500_with_an_error_id_and_no_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = request(gate(broken_app), "GET", "/graph")
    assert r.status_code == 500
    body = r.json()
    assert body["error"] == "InternalError" and "hunter2" not in r.text
    assert any(body["error_id"] in rec.getMessage() for rec in caplog.records)
    assert any("hunter2" in str(rec.exc_info) for rec in caplog.records)


def test_graph_errors_escaping_the_app_keep_status_and_headers() -> None:
    r = request(gate(overloaded_app), "GET", "/graph")
    assert r.status_code == 503 and r.headers["retry-after"] == "3"


def test_fast_predict_serves_predict_and_passes_the_rest() -> None:
    ingress = Ingress()
    app = FastPredict(echo_app, ingress)
    r = request(app, "POST", "/predict", content=b'{"inputs": 1}', headers={"x-user-id": "u"})
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert r.headers["x-feedback-token"] == "t"
    raw, headers = ingress.calls[0]
    assert raw == b'{"inputs": 1}' and headers["x-user-id"] == "u"
    assert request(app, "POST", "/feedback", content=b"{}").json()["path"] == "/feedback"
    assert request(app, "GET", "/predict").json()["path"] == "/predict"
