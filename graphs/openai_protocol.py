"""The OpenAI API's wire format for LLM graphs: request models, response bodies, SSE chunks
(one ``data:`` line per engine step, then ``data: [DONE]``) and errors in OpenAI's shape
(``{"error": {"message", "type", "param", "code"}}``, 400 naming the field for bad requests).
The routes that use it are in :mod:`graphs.openai_api`.
"""

from __future__ import annotations

import json
import time
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from graphs.spec import GraphSpec, ModelNode, RouterNode, refs
from nodes.calls import public_error, unwrap
from nodes.errors import OverloadedError, RequestValidationError, request_error
from nodes.llm import ChatMessage, SamplingFields

SSE_MEDIA_TYPE = "text/event-stream"
#: The request fields a graph's ``limits.max_tokens`` caps (each asks for that many tokens).
TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "min_tokens")
DONE = b"data: [DONE]\n\n"


# --- errors ------------------------------------------------------------------------------------


class OpenAIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        type: str = "invalid_request_error",
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.type = type
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        """The JSON error response."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def as_openai_error(exc: BaseException, graph: str, request_id: str | None = None) -> OpenAIError:
    """Any failure of a graph call as an OpenAI error (never a traceback, never internal
    exception text: see :func:`nodes.calls.public_error`)."""
    cause = unwrap(exc)
    if isinstance(cause, OpenAIError):
        return cause
    error = public_error(cause, None, request_id)
    if isinstance(error, RequestValidationError):
        return OpenAIError(400, str(error), param=error.field)  # "field: message"
    if isinstance(error, OverloadedError):
        return OpenAIError(
            503,
            str(error),
            type="server_error",
            code="overloaded",
            headers={"Retry-After": str(error.retry_after_s)},
        )
    kind = "invalid_request_error" if error.status_code < 500 else "server_error"
    return OpenAIError(error.status_code, str(error), type=kind)


# --- requests ----------------------------------------------------------------------------------


class StreamOptions(BaseModel):
    """``stream_options`` of a streaming request."""

    model_config = ConfigDict(extra="forbid")
    include_usage: bool = Field(False, description="Send a last chunk with token usage.")


class _OpenAIRequest(SamplingFields):
    model: str = Field(description="The graph's name (GET /v1/models lists it).")
    stream: bool = Field(False, description="Answer with server-sent events, token by token.")
    stream_options: StreamOptions | None = Field(None, description="Streaming options.")
    user: str | None = Field(None, description="End-user id (accepted, not used).")

    @model_validator(mode="after")
    def _stream_options(self) -> _OpenAIRequest:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options: only allowed when stream is true")
        return self

    @abstractmethod
    def payload(self) -> dict[str, Any]:
        """The payload the graph's entry chain gets."""


class ChatCompletionRequest(_OpenAIRequest):
    """Body of ``POST /<graph>/v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far.")
    max_completion_tokens: int | None = Field(
        None, ge=1, description="Newer name of max_tokens (wins when both are given)."
    )

    def payload(self) -> dict[str, Any]:
        sampling = self.sampling()
        if self.max_completion_tokens is not None:
            sampling["max_tokens"] = self.max_completion_tokens
        messages = [m.model_dump(exclude_none=True) for m in self.messages]
        return {"messages": messages, **sampling}


class CompletionRequest(_OpenAIRequest):
    """Body of ``POST /<graph>/v1/completions``."""

    prompt: str | list[str] = Field(description="The text to complete (one prompt).")
    echo: bool = Field(False, description="Prepend the prompt to the completion.")

    def payload(self) -> dict[str, Any]:
        return {"prompt": self.text(), **self.sampling()}

    def text(self) -> str:
        """The one prompt."""
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise OpenAIError(
                400, f"give one prompt per request, got {len(self.prompt)}", param="prompt"
            )
        return self.prompt[0]


def parse_request(model: type[_OpenAIRequest], raw: bytes) -> Any:
    """Validate a request body.

    Raises:
        OpenAIError: 400 naming the first bad field.
    """
    try:
        request = model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        error = request_error(exc)
        param = None if error.field == "body" else error.field
        raise OpenAIError(400, str(error), param=param) from None
    if isinstance(request, CompletionRequest):
        request.text()  # one prompt
    return request


# --- which graphs speak OpenAI -----------------------------------------------------------------


def llm_outputs(spec: GraphSpec) -> list[str]:
    """The LLM nodes whose output the graph returns: the entry's last node, or every arm's last
    node through routers; empty when some path ends in a node that is not an LLM."""
    done: dict[str, list[str] | None] = {}  # a node several arms end in is looked at once

    def ends(name: str) -> list[str] | None:
        if name not in done:
            done[name] = None  # (validation refuses cycles; this stops one all the same)
            done[name] = _ends(name)
        return done[name]

    def _ends(name: str) -> list[str] | None:
        node = spec.node(name)
        if isinstance(node, ModelNode) and node.runtime == "vllm":
            return [name]
        if isinstance(node, RouterNode):
            found: list[str] = []
            for arm in node.arms:
                sub = ends(refs(arm.target)[-1])
                if sub is None:
                    return None
                found.extend(n for n in sub if n not in found)
            return found
        return None

    return ends(refs(spec.entry)[-1]) or []


# --- responses ---------------------------------------------------------------------------------


def sse(data: Mapping[str, Any]) -> bytes:
    """One server-sent event carrying ``data`` as JSON."""
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


Kind = Literal["chat", "completion"]


class ChunkEncoder:
    """Turns an LLM node's stream items into OpenAI chunks (``chat.completion.chunk`` or
    ``text_completion``), as SSE events.

    Args:
        kind: ``chat`` or ``completion``.
        response_id: the ``id`` every chunk carries.
        model: the ``model`` every chunk carries.
        include_usage: send a last chunk with ``usage`` and no choices.
        echo: completions only: this prompt text goes first.
    """

    def __init__(
        self,
        kind: Kind,
        response_id: str,
        model: str,
        *,
        include_usage: bool = False,
        echo: str | None = None,
        created: int | None = None,
    ):
        self.kind = kind
        self.id = response_id
        self.model = model
        self.created = created if created is not None else int(time.time())
        self.include_usage = include_usage
        self._echo = echo
        self._started: set[int] = set()
        self.usage: dict[str, int] | None = None

    def _chunk(self, choices: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **more,
        }

    def encode(self, item: Mapping[str, Any]) -> list[bytes]:
        """The SSE events for one stream item (none for items that carry nothing new)."""
        if "usage" in item:
            self.usage = dict(item["usage"])
            if not self.include_usage:
                return []
            return [sse(self._chunk([], usage=self.usage))]
        index = int(item.get("index", 0))
        text = str(item.get("text", ""))
        finish = item.get("finish_reason")
        first = index not in self._started
        self._started.add(index)
        if self.kind == "completion" and first and self._echo:
            text = self._echo + text
        if not text and finish is None and not (first and self.kind == "chat"):
            return []  # a token that completes no character yet
        if self.kind == "chat":
            delta: dict[str, Any] = {"content": text} if text or not first else {"content": ""}
            if first:
                delta = {"role": "assistant", **delta}
            choice: dict[str, Any] = {"index": index, "delta": delta}
        else:
            choice = {"index": index, "text": text}
        choice.update({"logprobs": None, "finish_reason": finish})
        return [sse(self._chunk([choice]))]

    def error(self, err: OpenAIError) -> bytes:
        """An error that happens mid-stream, as an event (the status line is already sent)."""
        return sse(err.body())


def completion_body(
    kind: Kind,
    response_id: str,
    model: str,
    out: Mapping[str, Any],
    *,
    echo: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """A non-streaming response body from an LLM node's result."""
    choices = []
    for c in out.get("choices", []):
        choice: dict[str, Any] = {"index": c["index"]}
        if kind == "chat":
            choice["message"] = {"role": "assistant", "content": c["text"]}
        else:
            choice["text"] = (echo or "") + c["text"]
        choice.update({"logprobs": None, "finish_reason": c.get("finish_reason")})
        choices.append(choice)
    return {
        "id": response_id,
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": choices,
        "usage": dict(out.get("usage") or {}),
    }
