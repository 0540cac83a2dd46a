"""What an LLM node takes: OpenAI-compatible chat messages and sampling settings, and the
generation request (a prompt or messages) parsed and validated from a node payload."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nodes.errors import request_error

#: Largest ``n`` (completions per request) a node accepts.
MAX_CHOICES = 8


class ContentPart(BaseModel):
    """One part of a message's content; only text parts are supported."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text"] = Field(description="Part type; 'text' only.")
    text: str = Field(description="The text.")


class ChatMessage(BaseModel):
    """One chat message (OpenAI shape)."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant", "tool"] = Field(
        description="Who says it."
    )
    content: str | list[ContentPart] | None = Field(None, description="Text, or text parts.")
    name: str | None = Field(None, description="Optional participant name.")

    def text(self) -> str:
        """The content as one string (text parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class SamplingFields(BaseModel):
    """Sampling settings shared by LLM payloads and the OpenAI-compatible requests."""

    model_config = ConfigDict(extra="forbid")
    max_tokens: int | None = Field(
        None, ge=1, description="Most tokens to generate (default: the rest of the context)."
    )
    temperature: float = Field(1.0, ge=0, le=2, description="Sampling temperature; 0 is greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int | None = Field(
        None, ge=-1, lt=2**31, description="Sample among the k likeliest (vLLM)."
    )
    n: int = Field(1, ge=1, le=MAX_CHOICES, description="Completions to generate.")
    stop: str | list[str] | None = Field(
        None, description="Up to 4 strings that end generation (not included in the output)."
    )
    seed: int | None = Field(
        None, ge=-(2**63), lt=2**63, description="Per-request sampling seed (reproducible)."
    )
    presence_penalty: float = Field(0.0, ge=-2, le=2, description="OpenAI presence penalty.")
    frequency_penalty: float = Field(0.0, ge=-2, le=2, description="OpenAI frequency penalty.")
    min_tokens: int = Field(0, ge=0, description="Generate at least this many tokens (vLLM).")
    ignore_eos: bool = Field(False, description="Keep generating past end-of-sequence (vLLM).")

    @model_validator(mode="after")
    def _stops(self) -> SamplingFields:
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop: give at most 4 non-empty strings")
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError(
                f"min_tokens: {self.min_tokens} is more than max_tokens {self.max_tokens}"
            )
        return self

    def sampling(self) -> dict[str, Any]:
        """The sampling fields the request set (not the prompt): nodes before the LLM (a
        :class:`PromptTemplate`'s ``defaults``) can still fill the others in."""
        return {
            name: getattr(self, name)
            for name in SamplingFields.model_fields
            if name in self.model_fields_set
        }


class GenerationRequest(SamplingFields):
    """What an LLM node takes: a prompt or chat messages, and sampling settings."""

    prompt: str | None = Field(None, description="Text to complete.")
    messages: list[ChatMessage] | None = Field(
        None, min_length=1, description="Chat messages, rendered with the chat template."
    )

    @model_validator(mode="after")
    def _one_input(self) -> GenerationRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("prompt: give either prompt or messages, not both or neither")
        return self


def _plain(value: Any) -> Any:
    """Numpy values (from /predict or OIP tensors) as plain Python; a one-element list of a
    string (a BYTES tensor of shape [1]) as the string."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (str, bytes)):
        return _plain(value[0])
    return value


def parse_generation(payload: Mapping[str, Any]) -> GenerationRequest:
    """A node payload as a :class:`GenerationRequest`.

    Raises:
        RequestValidationError: naming the first bad field (``temperature``, ``messages.0``).
    """
    try:
        return GenerationRequest.model_validate({k: _plain(v) for k, v in payload.items()})
    except ValidationError as exc:
        raise request_error(exc) from None
