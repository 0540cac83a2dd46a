"""OpenAI-compatible endpoints of LLM graphs (the wire format is :mod:`graphs.openai_protocol`).

A graph whose output is an LLM node (``runtime: vllm``), directly or through routers, answers
``POST /<graph>/v1/chat/completions``, ``POST /<graph>/v1/completions`` and
``GET /<graph>/v1/models``; the ``model`` of a request is the graph's name. Requests run the
graph's entry chain like ``/predict`` does: preprocess nodes (prompt templates) see the chat or
completion payload, routers choose an arm and stream it through. With ``"stream": true`` the
answer is server-sent events, one ``data:`` line per engine step, then ``data: [DONE]``.

Errors are OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``, 400 naming the
field for bad requests. Responses carry ``X-Request-Id``, ``X-Served-By`` and, when a router
decided, ``X-Feedback-Token`` (also ``feedback_token`` in JSON bodies) for ``POST /feedback``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from graphs._openapi import json_body
from graphs.openai_protocol import (
    DONE,
    SSE_MEDIA_TYPE,
    TOKEN_FIELDS,
    ChatCompletionRequest,
    ChunkEncoder,
    CompletionRequest,
    Kind,
    OpenAIError,
    as_openai_error,
    completion_body,
    parse_request,
)
from graphs.runner import GraphRunner
from graphs.spec import GraphSpec
from nodes.calls import META, merge_notes
from routing.tokens import FEEDBACK_HEADER


def models(spec: GraphSpec) -> Response:
    """``GET /v1/models``: the graph, as the one model it serves."""
    body = {
        "object": "list",
        "data": [{"id": spec.name, "object": "model", "created": 0, "owned_by": "servegraph"}],
    }
    return JSONResponse(body)


def _check_request(spec: GraphSpec, body: ChatCompletionRequest | CompletionRequest) -> None:
    if body.model != spec.name:
        raise OpenAIError(
            404,
            f"the model {body.model!r} does not exist; this endpoint serves {spec.name!r}",
            param="model",
            code="model_not_found",
        )
    cap = spec.limits.max_tokens
    for field in TOKEN_FIELDS:
        asked = getattr(body, field, None)
        if cap is not None and asked is not None and asked > cap:
            raise OpenAIError(
                400,
                f"{field}: {asked} is more than this graph allows (limits.max_tokens={cap})",
                param=field,
            )


async def _head(
    stream: AsyncIterator[dict[str, Any]],
) -> tuple[list[str], dict[str, Any], dict[str, Any] | None]:
    """Read the stream's metadata items up to its first output item."""
    served: list[str] = []
    notes: dict[str, Any] = {}
    async for item in stream:
        if META in item:
            served.extend(item[META]["served_by"])
            merge_notes(notes, item[META]["notes"])
            continue
        return served, notes, item
    return served, notes, None


async def handle(runner: GraphRunner, kind: Kind, request: Request) -> Response:
    """``POST /v1/chat/completions`` (``kind="chat"``) or ``/v1/completions``."""
    spec = runner.spec
    try:
        model = ChatCompletionRequest if kind == "chat" else CompletionRequest
        body = parse_request(model, await request.body())
        _check_request(spec, body)
        request_id = runner.request_id()
        ctx = runner.context(request_id, request.headers, stream=bool(body.stream))
        payload = body.payload()
        prefix = "chatcmpl-" if kind == "chat" else "cmpl-"
        echo = body.text() if isinstance(body, CompletionRequest) and body.echo else None
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            encoder = ChunkEncoder(
                kind, prefix + request_id, spec.name, include_usage=include_usage, echo=echo
            )
            return await _stream(runner, payload, ctx, encoder)
        try:
            out, served, notes = await runner.run(payload, ctx)
        except Exception as exc:
            raise as_openai_error(exc, spec.name, request_id) from None
    except OpenAIError as err:
        return err.response()
    except Exception as exc:  # never a bare traceback
        return as_openai_error(exc, spec.name).response()
    reply = completion_body(kind, prefix + request_id, spec.name, out, echo=echo)
    headers = {"X-Served-By": ",".join(served)}  # Serve adds X-Request-Id itself
    token = runner.feedback_token(notes, request_id)
    if token is not None:
        reply["feedback_token"] = token
        headers[FEEDBACK_HEADER] = token
    reply["served_by"] = served
    return JSONResponse(reply, headers=headers)


async def _stream(
    runner: GraphRunner, payload: dict[str, Any], ctx: dict[str, Any], encoder: ChunkEncoder
) -> Response:
    """Run the graph streaming; the headers (feedback token included) go out once the first
    output item is in, so errors before it are still plain JSON errors."""
    stream = cast(
        AsyncGenerator[dict[str, Any], None],
        runner.stream(payload, ctx),
    )
    try:
        served, notes, first = await _head(stream)
    except BaseException:
        await stream.aclose()
        raise
    request_id = ctx["request_id"]
    headers = {
        "X-Served-By": ",".join(served),
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    }
    token = runner.feedback_token(notes, request_id)
    if token is not None:
        headers[FEEDBACK_HEADER] = token
    return StreamingResponse(
        _events(stream, first, encoder, runner.spec.name),
        media_type=SSE_MEDIA_TYPE,
        headers=headers,
    )


async def _events(
    stream: AsyncGenerator[dict[str, Any], None],
    first: dict[str, Any] | None,
    encoder: ChunkEncoder,
    graph: str,
) -> AsyncIterator[bytes]:
    items: Iterable[dict[str, Any]] = [first] if first is not None else []
    try:
        for item in items:
            for event in encoder.encode(item):
                yield event
        async for item in stream:
            if META in item:
                continue  # metadata after the headers went out (nothing to carry it)
            for event in encoder.encode(item):
                yield event
    except Exception as exc:
        yield encoder.error(as_openai_error(exc, graph))
    finally:
        # Closing the graph's stream (also when the client went away) cancels the calls
        # below, down to the engine, which aborts the request.
        await stream.aclose()
    yield DONE


def routes(runner: GraphRunner) -> APIRouter:
    """The OpenAI-compatible routes of ``runner``'s graph (the app mounts them only on graphs
    that end in an LLM node: :func:`graphs.openai_protocol.llm_outputs`)."""
    router = APIRouter()

    @router.post(
        "/v1/chat/completions",
        response_model=None,
        openapi_extra=json_body(ChatCompletionRequest),
    )
    async def chat(request: Request) -> Response:
        """OpenAI chat completions; ``"stream": true`` answers server-sent events."""
        return await handle(runner, "chat", request)

    @router.post(
        "/v1/completions",
        response_model=None,
        openapi_extra=json_body(CompletionRequest),
    )
    async def completions(request: Request) -> Response:
        """OpenAI text completions; ``"stream": true`` answers server-sent events."""
        return await handle(runner, "completion", request)

    @router.get("/v1/models", response_model=None)
    async def list_models() -> Response:
        """OpenAI model list: the graph itself."""
        return models(runner.spec)

    return router
