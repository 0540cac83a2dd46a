"""Open Inference Protocol v2 (the KServe/Triton REST protocol) for a graph: health, server and
model metadata, readiness and ``infer`` (JSON or the binary tensor data extension)."""

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from graphs._openapi import json_body
from graphs.runner import GraphRunner
from nodes.errors import ModelNotFoundError, NotReadyError
from nodes.tensors import (
    BINARY_HEADER,
    OIPInferRequest,
    decode_oip_inputs,
    encode_oip_response,
    parse_oip_request,
)
from routing.tokens import FEEDBACK_HEADER


def routes(runner: GraphRunner) -> APIRouter:
    """The OIP routes of ``runner``'s graph (its name is the OIP model name)."""
    spec = runner.spec
    router = APIRouter()
    oip_fields = {"name", "datatype", "shape"}
    metadata = {
        "name": spec.name,
        "versions": [spec.version],
        "platform": "servegraph",
        "inputs": [t.model_dump(include=oip_fields) for t in spec.inputs],
        "outputs": [t.model_dump(include=oip_fields) for t in spec.outputs],
    }

    def check_model(model_name: str, version: str | None = None) -> None:
        if model_name != spec.name:
            raise ModelNotFoundError(
                f"unknown model {model_name!r}; this endpoint serves {spec.name!r}"
            )
        if version is not None and version != spec.version:
            raise ModelNotFoundError(
                f"unknown version {version!r} of model {model_name!r}; it serves version "
                f"{spec.version!r}"
            )

    @router.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        """OIP liveness."""
        return {"live": True}

    @router.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        """OIP readiness: every node answers (503 when one does not)."""
        if not await runner.nodes_ready():
            raise NotReadyError(f"graph {spec.name!r} is not ready: a node does not answer")
        return {"ready": True}

    @router.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        """OIP server metadata."""
        return {"name": "servegraph", "version": spec.version, "extensions": ["binary_tensor_data"]}

    async def model_metadata(model_name: str, version: str | None = None) -> dict[str, Any]:
        """OIP model metadata: input and output names, datatypes, shapes."""
        check_model(model_name, version)
        return metadata

    async def model_ready(model_name: str, version: str | None = None) -> dict[str, Any]:
        """OIP model readiness."""
        check_model(model_name, version)
        if not await runner.nodes_ready():
            raise NotReadyError(f"model {model_name!r} is not ready: a node does not answer")
        return {"name": model_name, "ready": True}

    async def infer(model_name: str, request: Request, version: str | None = None) -> Response:
        """OIP inference, JSON or with the binary tensor data extension."""
        check_model(model_name, version)
        body, tail = parse_oip_request(await request.body(), request.headers.get(BINARY_HEADER))
        payload = decode_oip_inputs(spec.inputs, body, tail)
        request_id = runner.request_id()
        out, served, notes = await runner.run(payload, runner.context(request_id, request.headers))
        content, headers = encode_oip_response(spec.name, spec.version, body, out, request_id)
        headers["x-served-by"] = ",".join(served)
        token = runner.feedback_token(notes, request_id)
        if token is not None:
            headers[FEEDBACK_HEADER] = token
        return Response(content, headers=headers)

    # Each route twice, without and with a version: the version is a path parameter of the
    # second only (one handler for both would document ?version= on the first).
    for prefix in ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{version}"):
        versioned = prefix.endswith("{version}")
        router.get(prefix)(model_metadata if versioned else _unversioned(model_metadata))
        router.get(f"{prefix}/ready")(model_ready if versioned else _unversioned(model_ready))
        router.post(f"{prefix}/infer", openapi_extra=json_body(OIPInferRequest))(
            infer if versioned else _unversioned_infer(infer)
        )

    return router


def _unversioned(
    handler: Callable[[str, str | None], Awaitable[dict[str, Any]]],
) -> Callable[[str], Awaitable[dict[str, Any]]]:
    async def route(model_name: str) -> dict[str, Any]:
        return await handler(model_name, None)

    route.__name__, route.__doc__ = handler.__name__, handler.__doc__
    return route


def _unversioned_infer(
    handler: Callable[[str, Request, str | None], Awaitable[Response]],
) -> Callable[[str, Request], Awaitable[Response]]:
    async def route(model_name: str, request: Request) -> Response:
        return await handler(model_name, request, None)

    route.__name__, route.__doc__ = handler.__name__, handler.__doc__
    return route
