"""The ingress's ASGI layers, outermost first: :class:`ErrorBoundary` (anything unexpected is a
JSON 500 with an error id), :class:`RequestGate` (body size limit, JSON-only POST bodies) and
:class:`FastPredict` (``POST /predict`` served without FastAPI's routing layers)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from graphs.security import check_json_media_type
from nodes.errors import (
    GraphError,
    InternalError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from nodes.tensors import BINARY_HEADER

__all__ = [
    "ErrorBoundary",
    "FastPredict",
    "RequestGate",
    "error_body",
    "error_headers",
    "error_response",
    "read_body",
    "send_json",
]

log = logging.getLogger("servegraph")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int | None = None) -> bytes | None:
    """The whole request body from ASGI ``receive``; None when the client went away.

    Raises:
        _TooLarge: the body passed ``limit`` bytes (reading stops there).
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if limit is not None and size > limit:
            raise _TooLarge
        if not message.get("more_body", False):
            return b"".join(chunks)


def _is_oip(path: str) -> bool:
    return "/v2/" in path or path.endswith("/v2")


def error_body(exc: GraphError, path: str) -> dict[str, Any]:
    """The JSON body for ``exc``: the Open Inference Protocol's ``{"error": message}`` on OIP
    paths, OpenAI's ``{"error": {"message", "type", "param", "code"}}`` on ``/v1/`` paths, else
    the error's own shape."""
    if "/v1/" in path:
        kind = "server_error" if exc.status_code >= 500 else "invalid_request_error"
        return {"error": {"message": str(exc), "type": kind, "param": None, "code": None}}
    if _is_oip(path):
        return {"error": str(exc), **{k: v for k, v in exc.to_json().items() if k == "error_id"}}
    return exc.to_json()


def error_headers(exc: GraphError) -> dict[str, str]:
    """Headers an error response carries: ``Retry-After`` on overload."""
    retry = getattr(exc, "retry_after_s", None)
    return {"Retry-After": str(retry)} if retry is not None else {}


async def error_response(send: Send, exc: GraphError, path: str) -> None:
    """Send ``exc`` as a JSON response."""
    await send_json(send, exc.status_code, error_body(exc, path), error_headers(exc))


async def send_json(
    send: Send, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    """Send a whole JSON response."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
    ]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content})


class ErrorBoundary:
    """Turns anything the app did not answer into a JSON 500 with an error id (the exception
    goes to the log with the same id and the request id), so no client sees a traceback or a
    plain-text ``Internal Server Error``."""

    def __init__(self, inner: ASGIApp, request_id: Callable[[], str] | None = None):
        self.inner = inner
        self.request_id = request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.inner(scope, receive, tracked)
        except Exception as exc:
            error = exc if isinstance(exc, GraphError) else InternalError()
            if not isinstance(exc, GraphError):
                log.error(
                    "request %s: %s %s failed (error id %s)",
                    self._request_id(),
                    scope.get("method"),
                    scope.get("path"),
                    error.error_id,  # type: ignore[attr-defined]
                    exc_info=exc,
                )
            if not started:
                await error_response(send, error, scope.get("path", ""))

    def _request_id(self) -> str:
        try:
            return self.request_id() if self.request_id else "-"
        except Exception:
            return "-"


class RequestGate:
    """413 for bodies over ``limit`` (by Content-Length, or by bytes read for chunked bodies)
    and 415 for POST bodies that are not ``application/json``.

    OIP ``infer`` also takes the binary tensor extension (any media type with an
    ``Inference-Header-Content-Length`` header, which no web page can send without a CORS
    preflight) and no media type at all, as Triton's own client sends JSON requests.
    """

    def __init__(self, inner: ASGIApp, limit: int):
        self.inner = inner
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        headers = dict(scope.get("headers", ()))
        if scope.get("method") == "POST":
            path = scope.get("path", "")
            oip = _is_oip(path)
            try:
                if not (oip and BINARY_HEADER.encode() in headers):
                    content_type = headers.get(b"content-type")
                    check_json_media_type(
                        content_type.decode("latin-1") if content_type else None,
                        allow_missing=oip,
                    )
            except UnsupportedMediaTypeError as exc:
                return await error_response(send, exc, path)
        length = headers.get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.limit:
                return await self._reject(scope, send, f"{int(length)} bytes")
            return await self.inner(scope, receive, send)
        if scope.get("method") in ("GET", "HEAD"):
            return await self.inner(scope, receive, send)
        try:
            body = await read_body(receive, self.limit)
        except _TooLarge:
            return await self._reject(scope, send, f"more than {self.limit} bytes")
        if body is None:
            return  # client went away
        replay = [{"type": "http.request", "body": body, "more_body": False}]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        await self.inner(scope, replayed, send)

    async def _reject(self, scope: Scope, send: Send, size: str) -> None:
        exc = PayloadTooLargeError(
            f"request body of {size} exceeds max_body_bytes={self.limit}; send smaller "
            "batches or raise the graph's max_body_bytes"
        )
        await error_response(send, exc, scope.get("path", ""))


class Predictor(Protocol):
    """What :class:`FastPredict` serves ``/predict`` with (the ingress)."""

    async def predict_bytes(
        self, raw: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]: ...


class FastPredict:
    """Serves ``POST /predict`` itself, skipping FastAPI's routing, exception and dependency
    layers: the hot path of every graph (about 1 ms per request on a 2-core machine, the
    difference between a FastAPI route and a plain Serve ``__call__``)."""

    def __init__(self, inner: ASGIApp, ingress: Predictor):
        self.inner = inner
        self.ingress = ingress

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or scope["path"] not in ("/predict", scope.get("root_path", "") + "/predict")
        ):
            return await self.inner(scope, receive, send)
        body = await read_body(receive)
        if body is None:
            return  # client went away
        request_headers = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())
        }
        status, content, extra = await self.ingress.predict_bytes(body, request_headers)
        await send_json(send, status, content, extra)
