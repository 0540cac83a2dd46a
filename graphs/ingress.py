"""The HTTP ingress of a graph: ``/predict``, Open Inference Protocol v2, ``/graph``, ``/docs``."""

import asyncio
import hmac
import json
import os
import time
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from ray.exceptions import RayTaskError
from ray.serve.exceptions import BackPressureError

from graphs import openai_api
from graphs.errors import (
    GraphError,
    ModelNotFoundError,
    NodeError,
    OverloadedError,
    PayloadTooLargeError,
    RequestValidationError,
    UnauthorizedError,
)
from graphs.replica import fast_handles
from graphs.spec import INGRESS_NAME, GraphSpec, RouterNode, refs
from graphs.tensors import (
    BINARY_HEADER,
    decode_inputs,
    decode_oip_inputs,
    encode_oip_response,
    parse_oip_request,
    to_json,
)
from nodes._flow import DECISIONS, Result, run_chain
from routing.state import feedback_key
from routing.tokens import Decision, FeedbackTokens, MalformedTokenError

app = FastAPI(title="servegraph inference graph")
T = TypeVar("T")
#: Response header carrying the feedback token (also ``feedback_token`` in JSON bodies).
FEEDBACK_HEADER = "X-Feedback-Token"
#: Environment variable holding the bearer token the control endpoints require, when set.
CONTROL_TOKEN_ENV = "SERVEGRAPH_CONTROL_TOKEN"


class PredictRequest(BaseModel):
    """Body of ``POST /<graph>/predict``."""

    model_config = ConfigDict(extra="forbid")
    inputs: Any = Field(
        description="The graph's inputs: an object by input name, or a bare (nested list) tensor "
        "when the graph has one input.",
        examples=[{"input": [[0.0] * 64]}],
    )
    parameters: dict[str, Any] | None = Field(None, description="Free-form request parameters.")


class FeedbackRequest(BaseModel):
    """Body of ``POST /<graph>/feedback``."""

    model_config = ConfigDict(extra="forbid")
    token: str = Field(description="The feedback_token (or X-Feedback-Token) of the response.")
    reward: float = Field(
        allow_inf_nan=False,
        description="The response's reward, e.g. 1 if it was right and 0 if not "
        "(thompson_beta routers take rewards in [0, 1]).",
    )


class PredictResponse(BaseModel):
    """Body of a successful ``POST /<graph>/predict``."""

    request_id: str = Field(description="Id of this request; also in the X-Request-Id header.")
    outputs: dict[str, Any] = Field(description="The graph's outputs by name.")
    served_by: list[str] = Field(description="Nodes that produced the result, in call order.")
    notes: dict[str, Any] = Field(
        default_factory=dict, description="Per-node remarks, e.g. ensemble members left out."
    )
    feedback_token: str | None = Field(
        None,
        description="When a router decided: the token to POST to /feedback with a reward "
        "(also in the X-Feedback-Token header).",
    )


def _error_headers(exc: GraphError) -> dict[str, str]:
    """Headers an error response carries: Retry-After on overload."""
    return {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, OverloadedError) else {}


@app.exception_handler(GraphError)
async def _graph_error(request: Request, exc: GraphError) -> JSONResponse:
    headers = _error_headers(exc)
    # The Open Inference Protocol's error body is {"error": message}.
    oip = "/v2/" in request.url.path or request.url.path.endswith("/v2")
    body = {"error": str(exc)} if oip else exc.to_json()
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


class _TooLarge(Exception):
    pass


async def _read_body(receive: Any, limit: int | None = None) -> bytes | None:
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


class BodyLimit:
    """ASGI middleware: 413 for bodies over the limit, by Content-Length or by bytes read.

    A body without Content-Length (chunked) is read here, up to the limit, and replayed to the app.
    """

    def __init__(self, inner: Any, limit: int):
        self.inner = inner
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        headers = dict(scope.get("headers", ()))
        length = headers.get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.limit:
                return await self._reject(scope, send, f"{int(length)} bytes")
            return await self.inner(scope, receive, send)
        if scope.get("method") in ("GET", "HEAD"):
            return await self.inner(scope, receive, send)
        try:
            body = await _read_body(receive, self.limit)
        except _TooLarge:
            return await self._reject(scope, send, f"more than {self.limit} bytes")
        if body is None:
            return  # client went away
        replay = [{"type": "http.request", "body": body, "more_body": False}]

        async def replayed() -> Any:
            return replay.pop() if replay else await receive()

        await self.inner(scope, replayed, send)

    async def _reject(self, scope: Any, send: Any, size: str) -> None:
        exc = PayloadTooLargeError(
            f"request body of {size} exceeds max_body_bytes={self.limit}; send smaller "
            "batches or raise the graph's max_body_bytes"
        )
        await JSONResponse(exc.to_json(), status_code=413)(scope, _no_body, send)


class FastPredict:
    """ASGI middleware that serves ``POST /predict`` itself, skipping FastAPI's routing,
    exception and dependency layers: the hot path of every graph (about 1 ms per request on a
    2-core machine, the difference between a FastAPI route and a plain Serve ``__call__``)."""

    def __init__(self, inner: Any, ingress: Any):
        self.inner = inner
        self.ingress = ingress

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or scope["path"] not in ("/predict", scope.get("root_path", "") + "/predict")
        ):
            return await self.inner(scope, receive, send)
        body = await _read_body(receive)
        if body is None:
            return  # client went away
        request_headers = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())
        }
        status, content, extra = await self.ingress.predict_bytes(body, request_headers)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
        ]
        headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _fastapi_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic errors in FastAPI's 422 shape: ``loc`` starts with ``body``."""
    return [
        {
            "type": e["type"],
            "loc": ["body", *e["loc"]],
            "msg": e["msg"],
            "input": None if e["type"] == "json_invalid" else e.get("input"),
        }
        for e in exc.errors(include_url=False)
    ]


def check_control_auth(authorization: str | None, expected: str | None) -> None:
    """Control endpoints are open unless a token is configured; then they need
    ``Authorization: Bearer <token>`` (compared in constant time).

    Raises:
        UnauthorizedError: a token is configured and the header does not carry it (401).
    """
    if expected and not hmac.compare_digest(
        (authorization or "").encode(), f"Bearer {expected}".encode()
    ):
        raise UnauthorizedError(
            f"control endpoints need 'Authorization: Bearer <token>' (${CONTROL_TOKEN_ENV})"
        )


def _cause(exc: BaseException) -> BaseException:
    while isinstance(exc, RayTaskError) and getattr(exc, "cause", None) is not None:
        exc = exc.cause
    return exc


@serve.deployment(name=INGRESS_NAME)
@serve.ingress(app)
class GraphIngress:
    """One replica of a graph's HTTP ingress; it calls the entry chain through handles."""

    def __init__(self, spec: GraphSpec, handles: Mapping[str, Any]):
        self.spec = spec
        self._entry = refs(spec.entry)
        self._handles = fast_handles(handles)
        self._routers = [n.name for n in spec.nodes if isinstance(n, RouterNode)]
        self._tokens: FeedbackTokens | None = None
        app.title = f"{spec.name}: inference graph"
        app.description = spec.description
        app.openapi_schema = None
        app.user_middleware = [
            m for m in app.user_middleware if m.cls not in (BodyLimit, FastPredict)
        ]
        app.add_middleware(FastPredict, ingress=self)
        app.add_middleware(BodyLimit, limit=spec.max_body_bytes)  # added last: runs first
        self._metadata = {
            "name": spec.name,
            "versions": [spec.version],
            "platform": "servegraph",
            "inputs": [t.model_dump() for t in spec.inputs],
            "outputs": [t.model_dump() for t in spec.outputs],
        }

    @staticmethod
    def _context(request_id: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The per-request context every node receives: the request id and the HTTP headers
        (lower-cased names), which routers read sticky keys from."""
        return {
            "request_id": request_id,
            "headers": {k.lower(): v for k, v in (headers or {}).items()},
        }

    async def _run(self, payload: dict[str, Any], ctx: dict[str, Any]) -> Result:
        return await self._guard(run_chain(self._handles, self._entry, payload, ctx))

    async def _guard(self, call: Awaitable[T]) -> T:
        """Await a call into the graph, mapping every failure to a JSON error (GraphError)."""
        try:
            return await call
        except Exception as exc:  # never a bare traceback
            cause = _cause(exc)
            if isinstance(cause, GraphError):
                raise cause from None
            if isinstance(cause, BackPressureError):
                raise OverloadedError(f"graph {self.spec.name!r} is overloaded: {cause}") from None
            raise NodeError(f"{type(cause).__name__}: {cause}") from None

    def _feedback_token(self, notes: dict[str, Any], request_id: str) -> str | None:
        """Take the router decisions out of ``notes``; a signed token covering them, or None
        when no router decided."""
        decisions = notes.pop(DECISIONS, None)
        if not decisions:
            return None
        if self._tokens is None:
            self._tokens = FeedbackTokens(
                feedback_key(self.spec.name), ttl_s=self.spec.feedback_ttl_s
            )
        return self._tokens.issue(
            [Decision.from_json(d) for d in decisions], request_id, time.time()
        )

    @staticmethod
    def _request_id() -> str:
        return serve.context._get_serve_request_context().request_id

    @app.post(
        "/predict",
        response_model=None,
        responses={200: {"model": PredictResponse}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
            }
        },
    )
    async def predict(self, request: Request) -> Response:
        """Run the graph on JSON inputs."""
        # Served by FastPredict before FastAPI sees it; this route documents it (and serves it
        # should the middleware be bypassed).
        status, content, headers = await self.predict_bytes(await request.body(), request.headers)
        return Response(content, status_code=status, headers=headers, media_type="application/json")

    async def predict_bytes(
        self, raw: bytes, headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        """``POST /predict`` from body bytes to ``(status, JSON bytes, extra headers)``, errors
        included."""
        try:
            body = PredictRequest.model_validate_json(raw)
        except ValidationError as exc:
            return 422, json.dumps({"detail": _fastapi_errors(exc)}).encode(), {}
        try:
            request_id = self._request_id()
            payload = decode_inputs(self.spec.inputs, body.inputs)
            out, served, notes = await self._run(payload, self._context(request_id, headers))
        except GraphError as exc:
            return exc.status_code, json.dumps(exc.to_json()).encode(), _error_headers(exc)
        token = self._feedback_token(notes, request_id)
        reply = {
            "request_id": request_id,
            "outputs": to_json(out),
            "served_by": served,
            "notes": to_json(notes),
        }
        if token is None:
            return 200, json.dumps(reply).encode(), {}
        reply["feedback_token"] = token
        return 200, json.dumps(reply).encode(), {FEEDBACK_HEADER: token}

    @app.get("/graph")
    async def graph(self) -> dict[str, Any]:
        """The graph: nodes, edges, options and live router state."""
        spec = self.spec.model_dump(mode="json", fallback=repr)
        states = await asyncio.gather(*(self._handles[r].state.remote() for r in self._routers))
        live = dict(zip(self._routers, states))
        for node in spec["nodes"]:
            if node["name"] in live:
                node["state"] = live[node["name"]]
        spec["edges"] = list(self.spec.edges())
        return spec

    # --- routers: feedback, experiment reports, operator control ---------------------------

    @app.post("/feedback")
    async def feedback(self, body: FeedbackRequest) -> dict[str, Any]:
        """Reward an earlier response: its ``feedback_token`` and a reward (e.g. 1 when the
        prediction was right). Forged (401), expired (410), replayed (409) or malformed (400)
        tokens change nothing."""
        if self._tokens is None:
            self._tokens = FeedbackTokens(
                feedback_key(self.spec.name), ttl_s=self.spec.feedback_ttl_s
            )
        claims = self._tokens.verify(body.token, time.time())
        by_router: dict[str, list[list[Any]]] = {}
        for d in claims.decisions:
            if d.router not in self._routers:
                raise MalformedTokenError(
                    f"token names router {d.router!r}, which graph {self.spec.name!r} lacks"
                )
            by_router.setdefault(d.router, []).append(
                [d.arm] + ([list(d.context)] if d.context is not None else [])
            )
        facts = {
            "token_id": claims.token_id,
            "request_id": claims.request_id,
            "issued_at": claims.issued_at,
            "expires_at": claims.expires_at,
        }
        applied = []
        for router, decisions in by_router.items():
            call = self._handles[router].feedback.remote(facts, decisions, body.reward)
            applied.append(await self._guard(call))
        return {"request_id": claims.request_id, "reward": body.reward, "applied": applied}

    @app.get("/experiments")
    async def experiments(self) -> dict[str, Any]:
        """Per router and arm: requests, errors, p50/p95 latency, reward mean with a 95 %
        interval, and the difference against the control arm (the first) with its test."""
        calls = [self._guard(self._handles[r].experiments.remote()) for r in self._routers]
        return {
            "graph": self.spec.name,
            "routers": dict(zip(self._routers, await asyncio.gather(*calls))),
        }

    @app.post("/routers/{router}/{action}")
    async def control(self, router: str, action: str, request: Request) -> dict[str, Any]:
        """Operator actions: ``weights`` (body ``{"weights": [...]}``), ``pause``, ``resume``,
        ``promote``, ``rollback`` (body ``{"reason": ...}`` optional) and ``reset``. With
        ``SERVEGRAPH_CONTROL_TOKEN`` set, requests need ``Authorization: Bearer <token>``."""
        check_control_auth(request.headers.get("authorization"), os.environ.get(CONTROL_TOKEN_ENV))
        if router not in self._routers:
            raise ModelNotFoundError(
                f"unknown router {router!r}; routers: {', '.join(self._routers) or 'none'}"
            )
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            raise RequestValidationError("body", f"is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise RequestValidationError("body", "must be a JSON object")
        result = await self._guard(self._handles[router].control.remote(action, body))
        return {"router": router, "action": action, **result}

    # --- Open Inference Protocol v2 -----------------------------------------------------

    @app.get("/v2/health/live")
    async def live(self) -> dict[str, bool]:
        """OIP liveness."""
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready(self) -> dict[str, bool]:
        """OIP readiness: every node answers."""
        return {"ready": await self._nodes_ready()}

    async def _nodes_ready(self) -> bool:
        try:
            await asyncio.wait_for(
                asyncio.gather(*(h.stats.remote() for h in self._handles.values())), timeout=5
            )
        except Exception:
            return False
        return True

    @app.get("/v2")
    async def server_metadata(self) -> dict[str, Any]:
        """OIP server metadata."""
        return {
            "name": "servegraph",
            "version": self.spec.version,
            "extensions": ["binary_tensor_data"],
        }

    def _check_model(self, model_name: str) -> None:
        if model_name != self.spec.name:
            raise ModelNotFoundError(
                f"unknown model {model_name!r}; this endpoint serves {self.spec.name!r}"
            )

    @app.get("/v2/models/{model_name}")
    @app.get("/v2/models/{model_name}/versions/{version}")
    async def model_metadata(self, model_name: str, version: str | None = None) -> dict[str, Any]:
        """OIP model metadata: input and output names, datatypes, shapes."""
        self._check_model(model_name)
        return self._metadata

    @app.get("/v2/models/{model_name}/ready")
    @app.get("/v2/models/{model_name}/versions/{version}/ready")
    async def model_ready(self, model_name: str, version: str | None = None) -> dict[str, Any]:
        """OIP model readiness."""
        self._check_model(model_name)
        return {"name": model_name, "ready": await self._nodes_ready()}

    @app.post("/v2/models/{model_name}/infer")
    @app.post("/v2/models/{model_name}/versions/{version}/infer")
    async def infer(
        self, model_name: str, request: Request, version: str | None = None
    ) -> Response:
        """OIP inference, JSON or with the binary tensor data extension."""
        self._check_model(model_name)
        body, tail = parse_oip_request(await request.body(), request.headers.get(BINARY_HEADER))
        payload = decode_oip_inputs(self.spec.inputs, body, tail)
        request_id = self._request_id()
        out, served, notes = await self._run(payload, self._context(request_id, request.headers))
        content, headers = encode_oip_response(
            self.spec.name, self.spec.version, body, out, request_id
        )
        headers["x-served-by"] = ",".join(served)
        token = self._feedback_token(notes, request_id)
        if token is not None:
            headers[FEEDBACK_HEADER] = token
        return Response(content, headers=headers)

    # --- OpenAI-compatible (LLM graphs; see graphs.openai_api) ---------------------------------

    @app.post(
        "/v1/chat/completions",
        response_model=None,
        openapi_extra=openai_api.openapi_body(openai_api.ChatCompletionRequest),
    )
    async def openai_chat(self, request: Request) -> Response:
        """OpenAI chat completions; ``"stream": true`` answers server-sent events."""
        return await openai_api.handle(self, "chat", request)

    @app.post(
        "/v1/completions",
        response_model=None,
        openapi_extra=openai_api.openapi_body(openai_api.CompletionRequest),
    )
    async def openai_completions(self, request: Request) -> Response:
        """OpenAI text completions; ``"stream": true`` answers server-sent events."""
        return await openai_api.handle(self, "completion", request)

    @app.get("/v1/models", response_model=None)
    async def openai_models(self) -> Response:
        """OpenAI model list: the graph itself."""
        return openai_api.models(self.spec)
