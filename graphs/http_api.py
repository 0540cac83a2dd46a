"""The HTTP app of a graph's ingress, built once per replica by :func:`make_app`.

Routes: ``/predict`` (served by :class:`~graphs.middleware.FastPredict` on the hot path),
``/graph``, ``/feedback``, ``/experiments`` and the routers' control actions here; the Open
Inference Protocol (:mod:`graphs.oip`) and the OpenAI API (:mod:`graphs.openai_api`) in their
own modules. Every route talks to the graph through a :class:`~graphs.runner.GraphRunner`.
"""

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from graphs import oip, openai_api, ui
from graphs._openapi import install, json_body
from graphs.admission import AdmissionGate, admission_for
from graphs.metrics import FeedbackMetrics
from graphs.middleware import ErrorBoundary, FastPredict, RequestGate, error_body, error_headers
from graphs.openai_protocol import llm_outputs
from graphs.runner import GraphRunner
from graphs.security import check_control_auth, control_token, redact_spec
from graphs.spec import INGRESS_NAME, EnsembleNode, RouterNode
from graphs.tracing import TraceContext
from nodes.errors import (
    GraphError,
    ModelNotFoundError,
    RequestValidationError,
    fastapi_detail,
    request_error,
)
from nodes.tensors import decode_inputs, to_json
from routing.tokens import FEEDBACK_HEADER


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


class Predict:
    """``POST /predict`` from body bytes to ``(status, JSON bytes, extra headers)``, errors
    included: what :class:`FastPredict` and the documented route both serve."""

    def __init__(self, runner: GraphRunner):
        self.runner = runner

    async def predict_bytes(
        self, raw: bytes, headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        runner = self.runner
        try:
            body = PredictRequest.model_validate_json(raw)
        except ValidationError as exc:
            return 422, json.dumps({"detail": fastapi_detail(exc)}).encode(), {}
        try:
            request_id = runner.request_id()
            payload = decode_inputs(runner.spec.inputs, body.inputs)
            out, served, notes = await runner.run(payload, runner.context(request_id, headers))
        except GraphError as exc:
            return exc.status_code, json.dumps(exc.to_json()).encode(), error_headers(exc)
        token = runner.feedback_token(notes, request_id)
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


def make_app(runner: GraphRunner) -> FastAPI:
    """The graph's FastAPI app: routes, error handling and the ASGI layers around it."""
    spec = runner.spec
    app = FastAPI(title=f"{spec.name}: inference graph", description=spec.description)
    predictor = Predict(runner)
    admission = admission_for(spec)  # in-flight cap and tenant limits; .describe() for /graph
    secret = control_token()
    rewards = FeedbackMetrics(spec.name)  # servegraph_feedback{outcome, reason}

    @app.exception_handler(GraphError)
    async def _graph_error(request: Request, exc: GraphError) -> JSONResponse:
        return JSONResponse(
            error_body(exc, request.url.path),
            status_code=exc.status_code,
            headers=error_headers(exc),
        )

    @app.post(
        "/predict",
        response_model=None,
        responses={200: {"model": PredictResponse}},
        openapi_extra=json_body(PredictRequest),
    )
    async def predict(request: Request) -> Response:
        """Run the graph on JSON inputs."""
        # Served by FastPredict before FastAPI sees it; this route documents it (and serves it
        # should the middleware be bypassed).
        status, content, headers = await predictor.predict_bytes(
            await request.body(), request.headers
        )
        return Response(content, status_code=status, headers=headers, media_type="application/json")

    @app.get("/graph")
    async def graph() -> dict[str, Any]:
        """The graph: nodes (each with the deployment it runs in), edges, options and live
        router state."""
        view = redact_spec(spec.model_dump(mode="json", fallback=repr))
        states = await asyncio.gather(*(runner.handles[r].state.remote() for r in runner.routers))
        live = dict(zip(runner.routers, states))
        placement = runner.placement
        # Routers and ensembles: their arms' / members' breakers and fallback, and the breakers
        # and retries of the calls their replica makes (the ingress's below).
        resilient = [n.name for n in spec.nodes if isinstance(n, (RouterNode, EnsembleNode))]
        guarded = await asyncio.gather(*(runner.handles[n].resilience.remote() for n in resilient))
        guards = dict(zip(resilient, guarded))
        for node in view["nodes"]:
            node["deployment"] = placement.host[node["name"]]  # where it runs
            node["placement"] = placement.reasons[node["name"]]
            if node["name"] in live:
                node["state"] = live[node["name"]]
            if guards.get(node["name"]):
                node["resilience"] = guards[node["name"]]
        if runner.calls.state():
            view["ingress_calls"] = runner.calls.state()
        view["admission"] = admission.describe()  # this ingress replica's figures
        view["deployments"] = [INGRESS_NAME, *placement.deployments()]
        view["edges"] = list(spec.edges())
        if runner.observer is not None:  # this ingress replica's sample
            view["observe"] = {"settings": view["observe"], **runner.observer.report()}
        return view

    @app.post("/feedback", openapi_extra=json_body(FeedbackRequest))
    async def feedback(request: Request) -> dict[str, Any]:
        """Reward an earlier response: its ``feedback_token`` and a reward (e.g. 1 when the
        prediction was right). Forged (401), expired (410), replayed (409) or malformed (400)
        tokens change nothing."""
        try:  # read here: FastAPI's own parsing answers a plain 400 for a body that is not JSON
            body = FeedbackRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            rewards.refused(exc)
            raise request_error(exc) from None
        try:
            result = await _apply_feedback(runner, body)
        except Exception as exc:
            rewards.refused(exc)
            raise
        rewards.accepted()
        return result

    @app.get("/experiments")
    async def experiments() -> dict[str, Any]:
        """Per router and arm: requests, errors, p50/p95 latency, reward mean with a 95 %
        interval, and the difference against the control arm (the first) with its test."""
        calls = [runner.guard(runner.handles[r].experiments.remote()) for r in runner.routers]
        return {
            "graph": spec.name,
            "routers": dict(zip(runner.routers, await asyncio.gather(*calls))),
        }

    async def control(router: str, action: str, request: Request) -> dict[str, Any]:
        """Operator actions: ``weights`` (body ``{"weights": [...]}``), ``pause``, ``resume``,
        ``promote``, ``rollback`` (body ``{"reason": ...}`` optional), ``switch`` (blue/green:
        body ``{"to": "<arm>"}``; answers once every replica has switched) and ``reset``. Requests
        need ``Authorization: Bearer <token>`` (``$SERVEGRAPH_CONTROL_TOKEN``, else the state
        folder's ``control.token``)."""
        check_control_auth(request.headers.get("authorization"), secret)
        if router not in runner.routers:
            raise ModelNotFoundError(
                f"unknown router {router!r}; routers: {', '.join(runner.routers) or 'none'}"
            )
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            raise RequestValidationError("body", f"is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise RequestValidationError("body", "must be a JSON object")
        result = await runner.guard(runner.handles[router].control.remote(action, body))
        return {"router": router, "action": action, **result}

    if runner.routers:  # the document lists what exists (graphs._openapi)
        app.post("/routers/{router}/{action}")(control)
    app.include_router(oip.routes(runner))
    if llm_outputs(spec):  # OpenAI routes only on graphs whose output is an LLM
        app.include_router(openai_api.routes(runner))
    app.include_router(ui.routes(runner, admission))  # GET /ui (the live page), GET /live
    install(app, spec)
    # Added last runs first: TraceContext > ErrorBoundary > AdmissionGate > RequestGate >
    # FastPredict > FastAPI (admission answers 429/503 before a body is read or any work
    # starts; every answer, errors included, carries traceparent).
    app.state.admission = admission
    app.add_middleware(FastPredict, ingress=predictor)
    app.add_middleware(RequestGate, limit=spec.max_body_bytes)
    app.add_middleware(AdmissionGate, admission=admission)
    app.add_middleware(ErrorBoundary, request_id=runner.request_id)
    app.add_middleware(TraceContext, graph=spec.name, request_id=runner.request_id)
    return app


async def _apply_feedback(runner: GraphRunner, body: FeedbackRequest) -> dict[str, Any]:
    """Verify a feedback token and send its reward to the routers that decided."""
    claims = runner.tokens.verify(body.token, time.time())
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
        call = runner.handles[router].feedback.remote(facts, decisions, body.reward)
        applied.append(await runner.guard(call))
    if runner.observer is not None:
        arms = [(d.router, d.arm) for d in claims.decisions]
        runner.observer.feedback(claims.request_id, arms, body.reward)
    return {"request_id": claims.request_id, "reward": body.reward, "applied": applied}
