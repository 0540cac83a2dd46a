"""From a generation request to the engine's prompt: chat-template rendering, prompt token ids,
the completion budget left in the context, and the :class:`PromptTemplate` preprocess node."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nodes.calls import Payload
from nodes.errors import RequestValidationError
from nodes.llm.requests import ChatMessage, GenerationRequest, SamplingFields, _plain


def render_messages(tokenizer: Any, messages: list[ChatMessage]) -> str:
    """The prompt text for chat ``messages``: the tokenizer's chat template, ending with the
    assistant's cue.

    Raises:
        RequestValidationError: the tokenizer has no chat template (field ``messages``).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise RequestValidationError(
            "messages",
            "this model has no chat template; send a prompt to /v1/completions, or put a "
            "prompt-template node (nodes.llm:PromptTemplate) before the model",
        )
    plain = [{"role": m.role, "content": m.text()} for m in messages]
    text = tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=True)
    return str(text)


def prompt_token_ids(tokenizer: Any, request: GenerationRequest) -> list[int]:
    """The token ids the engine gets for ``request`` (chat template applied to messages)."""
    if request.messages is not None:
        # The template writes the special tokens (BOS...) itself.
        text = render_messages(tokenizer, request.messages)
        return list(tokenizer.encode(text, add_special_tokens=False))
    return list(tokenizer.encode(request.prompt or ""))


def completion_budget(request: GenerationRequest, prompt_tokens: int, max_model_len: int) -> int:
    """``max_tokens`` for the engine: as asked, or the rest of the context.

    Raises:
        RequestValidationError: the prompt, or prompt plus ``max_tokens``, exceeds the context;
            ``min_tokens`` asks for more than that.
    """
    field = "messages" if request.messages is not None else "prompt"
    if prompt_tokens >= max_model_len:
        raise RequestValidationError(
            field,
            f"is {prompt_tokens} tokens; this model's context is {max_model_len} tokens "
            "(prompt and completion together)",
        )
    room = max_model_len - prompt_tokens
    if request.max_tokens is not None and request.max_tokens > room:
        raise RequestValidationError(
            "max_tokens",
            f"{request.max_tokens} does not fit: the prompt is {prompt_tokens} tokens and the "
            f"context {max_model_len}; ask for at most {room}",
        )
    budget = request.max_tokens or room
    if request.min_tokens > budget:
        raise RequestValidationError(
            "min_tokens",
            f"{request.min_tokens} is more than the {budget} tokens this request may generate",
        )
    return budget


class PromptTemplate:
    """Preprocess node for LLM graphs: adds a system message, wraps prompts in a template, and
    fills in sampling defaults.

    Use as ``function: nodes.llm:PromptTemplate`` with ``init_kwargs: {system: ...,
    template: "Q: {prompt}\\nA:", defaults: {max_tokens: 64}}``. Other payload keys pass
    through.

    Args:
        system: system message put first in chat requests that have none.
        template: text with one ``{prompt}`` placeholder that completion prompts are put in.
        defaults: sampling settings (``max_tokens``, ``temperature``...) for requests that do
            not set them.
    """

    def __init__(
        self,
        system: str | None = None,
        template: str = "{prompt}",
        defaults: Mapping[str, Any] | None = None,
    ):
        if "{prompt}" not in template:
            raise ValueError(f"template must contain '{{prompt}}', got {template!r}")
        unknown = sorted(set(defaults or {}) - set(SamplingFields.model_fields))
        if unknown:
            known = ", ".join(SamplingFields.model_fields)
            raise ValueError(f"defaults: unknown sampling settings {unknown} (known: {known})")
        self.system = system
        self.template = template
        self.defaults = SamplingFields.model_validate(defaults or {}).sampling()

    def __call__(self, payload: Payload) -> Payload:
        out = {**self.defaults, **payload}
        messages = out.get("messages")
        if self.system and isinstance(messages, list):
            if not any(isinstance(m, Mapping) and m.get("role") == "system" for m in messages):
                out["messages"] = [{"role": "system", "content": self.system}, *messages]
        if "prompt" in out:
            out["prompt"] = self.template.replace("{prompt}", str(_plain(out["prompt"])))
        return out

    def __repr__(self) -> str:
        return (
            f"PromptTemplate(system={self.system!r}, template={self.template!r}, "
            f"defaults={self.defaults!r})"
        )
