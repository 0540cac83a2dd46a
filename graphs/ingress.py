"""The HTTP ingress of a graph: ``/predict``, Open Inference Protocol v2, ``/graph``, ``/docs``."""

import asyncio
import json
import time
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve

from graphs import openai_api
from graphs._openapi import json_body
from graphs.errors import (
    GraphError,
    ModelNotFoundError,
    NotReadyError,
    RequestValidationError,
    fastapi_detail,
)
from graphs.middleware import (
    ErrorBoundary,
    FastPredict,
    RequestGate,
    error_body,
    error_headers,
)
from graphs.replica import fast_handles
from graphs.security import check_control_auth, control_token, redact_spec
from graphs.spec import INGRESS_NAME, GraphSpec, RouterNode, refs
from graphs.tensors import (
    BINARY_HEADER,
    OIPInferRequest,
    decode_inputs,
    decode_oip_inputs,
    encode_oip_response,
    parse_oip_request,
    to_json,
)
from nodes._flow import DECISIONS, Result, public_error, run_chain
from routing.keys import graph_tokens
from routing.tokens import FEEDBACK_HEADER, Decision, FeedbackTokens

app = FastAPI(title="servegraph inference graph")
T = TypeVar("T")


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


@app.exception_handler(GraphError)
async def _graph_error(request: Request, exc: GraphError) -> JSONResponse:
    return JSONResponse(
        error_body(exc, request.url.path), status_code=exc.status_code, headers=error_headers(exc)
    )


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
            m for m in app.user_middleware if m.cls not in (ErrorBoundary, RequestGate, FastPredict)
        ]
        # Added last runs first: ErrorBoundary > RequestGate > FastPredict > FastAPI.
        app.add_middleware(FastPredict, ingress=self)
        app.add_middleware(RequestGate, limit=spec.max_body_bytes)
        app.add_middleware(ErrorBoundary, request_id=self._request_id)
        self._control_token = control_token()
        oip_fields = {"name", "datatype", "shape"}
        self._metadata = {
            "name": spec.name,
            "versions": [spec.version],
            "platform": "servegraph",
            "inputs": [t.model_dump(include=oip_fields) for t in spec.inputs],
            "outputs": [t.model_dump(include=oip_fields) for t in spec.outputs],
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
        call = run_chain(self._handles, self._entry, payload, ctx)
        return await self._guard(call, ctx["request_id"])

    async def _guard(self, call: Awaitable[T], request_id: str | None = None) -> T:
        """Await a call into the graph, mapping every failure to a JSON error (GraphError)
        that never carries internal exception text (see :func:`nodes._flow.public_error`)."""
        try:
            return await call
        except Exception as exc:  # never a bare traceback
            raise public_error(exc, None, request_id) from None

    def _feedback_token(self, notes: dict[str, Any], request_id: str) -> str | None:
        """Take the router decisions out of ``notes``; a signed token covering them, or None
        when no router decided."""
        decisions = notes.pop(DECISIONS, None)
        if not decisions:
            return None
        if self._tokens is None:
            self._tokens = graph_tokens(self.spec)
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
        openapi_extra=json_body(PredictRequest),
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
            return 422, json.dumps({"detail": fastapi_detail(exc)}).encode(), {}
        try:
            request_id = self._request_id()
            payload = decode_inputs(self.spec.inputs, body.inputs)
            out, served, notes = await self._run(payload, self._context(request_id, headers))
        except GraphError as exc:
            return exc.status_code, json.dumps(exc.to_json()).encode(), error_headers(exc)
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
        spec = redact_spec(self.spec.model_dump(mode="json", fallback=repr))
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
            self._tokens = graph_tokens(self.spec)
        claims = self._tokens.verify(body.token, time.time())
        by_router: dict[str, list[list[Any]]] = {}
        for d in claims.decisions:  # verify() checked each router is one of this graph's
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
        ``promote``, ``rollback`` (body ``{"reason": ...}`` optional) and ``reset``. Requests
        need ``Authorization: Bearer <token>`` (``$SERVEGRAPH_CONTROL_TOKEN``, else the state
        folder's ``control.token``)."""
        check_control_auth(request.headers.get("authorization"), self._control_token)
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
        """OIP readiness: every node answers (503 when one does not)."""
        if not await self._nodes_ready():
            raise NotReadyError(f"graph {self.spec.name!r} is not ready: a node does not answer")
        return {"ready": True}

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

    def _check_model(self, model_name: str, version: str | None = None) -> None:
        if model_name != self.spec.name:
            raise ModelNotFoundError(
                f"unknown model {model_name!r}; this endpoint serves {self.spec.name!r}"
            )
        if version is not None and version != self.spec.version:
            raise ModelNotFoundError(
                f"unknown version {version!r} of model {model_name!r}; it serves version "
                f"{self.spec.version!r}"
            )

    @app.get("/v2/models/{model_name}")
    @app.get("/v2/models/{model_name}/versions/{version}")
    async def model_metadata(self, model_name: str, version: str | None = None) -> dict[str, Any]:
        """OIP model metadata: input and output names, datatypes, shapes."""
        self._check_model(model_name, version)
        return self._metadata

    @app.get("/v2/models/{model_name}/ready")
    @app.get("/v2/models/{model_name}/versions/{version}/ready")
    async def model_ready(self, model_name: str, version: str | None = None) -> dict[str, Any]:
        """OIP model readiness."""
        self._check_model(model_name, version)
        if not await self._nodes_ready():
            raise NotReadyError(f"model {model_name!r} is not ready: a node does not answer")
        return {"name": model_name, "ready": True}

    @app.post("/v2/models/{model_name}/infer", openapi_extra=json_body(OIPInferRequest))
    @app.post(
        "/v2/models/{model_name}/versions/{version}/infer", openapi_extra=json_body(OIPInferRequest)
    )
    async def infer(
        self, model_name: str, request: Request, version: str | None = None
    ) -> Response:
        """OIP inference, JSON or with the binary tensor data extension."""
        self._check_model(model_name, version)
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
        openapi_extra=json_body(openai_api.ChatCompletionRequest),
    )
    async def openai_chat(self, request: Request) -> Response:
        """OpenAI chat completions; ``"stream": true`` answers server-sent events."""
        return await openai_api.handle(self, "chat", request)

    @app.post(
        "/v1/completions",
        response_model=None,
        openapi_extra=json_body(openai_api.CompletionRequest),
    )
    async def openai_completions(self, request: Request) -> Response:
        """OpenAI text completions; ``"stream": true`` answers server-sent events."""
        return await openai_api.handle(self, "completion", request)

    @app.get("/v1/models", response_model=None)
    async def openai_models(self) -> Response:
        """OpenAI model list: the graph itself."""
        return openai_api.models(self.spec)
