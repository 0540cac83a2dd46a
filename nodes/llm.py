"""LLM model nodes (``runtime: vllm``): the vLLM async engine inside the node's deployment.

A node takes a generation payload and returns (or streams) text::

    {"prompt": "Once upon a time"}                       # or, for chat models:
    {"messages": [{"role": "user", "content": "Hi"}]}    # rendered with the chat template
    # sampling, all optional (OpenAI names): max_tokens, temperature, top_p, top_k, n, stop,
    # seed, presence_penalty, frequency_penalty, min_tokens, ignore_eos

``__call__`` answers ``{"text": str, "choices": [{"index", "text", "token_ids",
"finish_reason"}], "usage": {"prompt_tokens", "completion_tokens", "total_tokens"}}``.
``stream`` yields chunks ``{"index", "text" (the new text), "token_ids" (the new tokens),
"finish_reason" (None, then "stop" or "length")}`` per choice, and finally ``{"usage": {...}}``;
it reads the engine at most every ``engine.stream_batch_ms``, so a chunk carries every engine
step since the last one. A stream that is closed early (the client went away) aborts the
request in the engine.

Everything but :class:`LLMRunner` is pure and runs without vLLM: request parsing and
validation, sampling limits, chat-template rendering, engine arguments.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib.util
import logging
import os
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from graphs.errors import RequestValidationError, request_error
from graphs.spec import EngineSettings, ModelNode
from nodes._flow import Payload, Result

logger = logging.getLogger(__name__)

#: Largest ``n`` (completions per request) a node accepts.
MAX_CHOICES = 8


# --- requests ---------------------------------------------------------------------------------


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
    top_k: int | None = Field(None, ge=-1, description="Sample among the k likeliest (vLLM).")
    n: int = Field(1, ge=1, le=MAX_CHOICES, description="Completions to generate.")
    stop: str | list[str] | None = Field(
        None, description="Up to 4 strings that end generation (not included in the output)."
    )
    seed: int | None = Field(None, description="Per-request sampling seed (reproducible).")
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


# --- prompts -----------------------------------------------------------------------------------


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
        RequestValidationError: the prompt, or prompt plus ``max_tokens``, exceeds the context.
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
    return request.max_tokens or room


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


# --- streaming ---------------------------------------------------------------------------------


async def paced(items: AsyncGenerator[Any, None], interval_s: float) -> AsyncGenerator[Any, None]:
    """``items``, pulled at most once every ``interval_s`` (the first at once).

    vLLM's engine merges the deltas of a request that its consumer has not taken yet, so pulling
    the engine's stream this way sends fewer, larger chunks when the engine is fast (every chunk
    costs a hop between processes on its way to the client) and every token as it comes when it
    is slow. Closing this stream closes ``items`` (the engine then aborts the request).
    """
    async with contextlib.aclosing(items) as source:
        if interval_s <= 0:
            async for item in source:
                yield item
            return
        loop = asyncio.get_running_loop()
        async for item in source:
            pulled = loop.time()
            yield item
            await asyncio.sleep(max(0.0, pulled + interval_s - loop.time()))


# --- engine ------------------------------------------------------------------------------------


def engine_env(settings: EngineSettings) -> dict[str, str]:
    """Environment variables the engine needs before it starts."""
    env = dict(settings.env)
    if settings.cpu_kv_cache_gb is not None:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(settings.cpu_kv_cache_gb))
    return env


def engine_kwargs(spec: ModelNode, on_gpu: bool) -> dict[str, Any]:
    """``AsyncEngineArgs`` keyword arguments for a ``runtime: vllm`` node.

    Args:
        spec: the node.
        on_gpu: whether the replica holds a GPU (GPU-only settings are left out on CPU).
    """
    settings = spec.engine or EngineSettings()
    kwargs: dict[str, Any] = {
        "model": spec.model_path,
        "served_model_name": spec.name,
        "dtype": settings.dtype,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "disable_log_stats": True,
        # Eager mode on CPU: compiling the graph costs minutes of start-up on small machines.
        "enforce_eager": settings.enforce_eager
        if settings.enforce_eager is not None
        else not on_gpu,
    }
    optional = {
        "max_model_len": settings.max_model_len,
        "max_num_seqs": settings.max_num_seqs,
        "seed": settings.seed,
        "tokenizer": settings.tokenizer,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    if on_gpu:
        share = settings.gpu_memory_utilization
        if share is None:
            # Replicas sharing a GPU (num_gpus: 0.5) each take their share of its memory.
            share = round(0.9 * min(1.0, spec.num_gpus or 1.0), 4)
        kwargs["gpu_memory_utilization"] = share
    kwargs.update(settings.extra_args)
    return kwargs


def engine_arg_names() -> set[str] | None:
    """Names ``AsyncEngineArgs`` takes, read from vLLM's source without importing it (the
    import takes seconds); None when vLLM is not installed or its source is not readable."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), "engine", "arg_utils.py")
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError):
        return None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in ("EngineArgs", "AsyncEngineArgs"):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
    return names or None


def unknown_engine_args(extra: Mapping[str, Any]) -> list[str]:
    """Keys of ``engine.extra_args`` that vLLM's engine does not take (none when unknowable)."""
    names = engine_arg_names()
    return [] if names is None else sorted(k for k in extra if k not in names)


def _replica_gpu_ids() -> list[Any]:
    from nodes.runtimes import replica_gpu_ids

    return replica_gpu_ids()


class LLMRunner:
    """Runs a ``runtime: vllm`` node: one ``AsyncLLM`` engine per replica.

    The engine batches concurrent requests itself (continuous batching), so the node needs no
    ``batching:``; give it ``max_ongoing_requests`` for the concurrency it should take.
    """

    def __init__(self, spec: ModelNode):
        self.spec = spec
        self.settings = settings = spec.engine or EngineSettings()
        os.environ.update(engine_env(settings))
        from transformers import AutoTokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        gpus = _replica_gpu_ids()
        self.device = "cuda" if gpus else "cpu"
        self.engine = AsyncLLM.from_engine_args(
            AsyncEngineArgs(**engine_kwargs(spec, on_gpu=bool(gpus)))
        )
        self.tokenizer = AutoTokenizer.from_pretrained(settings.tokenizer or spec.model_path)
        self.max_model_len = int(self.engine.model_config.max_model_len)
        self._counts = {"requests": 0, "aborted": 0, "completion_tokens": 0, "chunks": 0}
        self._running = 0

    # -- requests --

    async def _engine_input(self, ids: list[int]) -> Any:
        """The prompt as the engine's renderer prepares it (raw token ids on older vLLMs)."""
        prompt: dict[str, Any] = {"prompt_token_ids": ids}
        renderer = getattr(self.engine, "renderer", None)
        if renderer is None or not hasattr(renderer, "render_cmpl_async"):
            return prompt
        from vllm.renderers.inputs.preprocess import parse_model_prompt

        parsed = parse_model_prompt(self.engine.model_config, prompt)
        (rendered,) = await renderer.render_cmpl_async([parsed])
        return rendered

    def _sampling(self, request: GenerationRequest, max_tokens: int, stream: bool) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            n=request.n,
            max_tokens=max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            top_k=request.top_k if request.top_k is not None else 0,
            stop=request.stop,
            seed=request.seed,
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
            min_tokens=request.min_tokens,
            ignore_eos=request.ignore_eos,
            output_kind=RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY,
        )

    def _prepare(self, payload: Payload, stream: bool) -> tuple[list[int], Any]:
        """Prompt token ids and sampling parameters; RequestValidationError on bad input."""
        request = parse_generation(payload)
        ids = prompt_token_ids(self.tokenizer, request)
        budget = completion_budget(request, len(ids), self.max_model_len)
        return ids, self._sampling(request, budget, stream)

    async def _generate(
        self, ids: list[int], params: Any, ctx: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        # Unique per engine call: one graph request may reach this node more than once.
        request_id = f"{ctx.get('request_id') or 'req'}-{uuid.uuid4().hex[:8]}"
        self._counts["requests"] += 1
        self._running += 1
        try:
            engine_input = await self._engine_input(ids)
            async for out in self.engine.generate(engine_input, params, request_id):
                yield out
        except (asyncio.CancelledError, GeneratorExit):
            # engine.generate() aborts the request in the engine on the way out; count it.
            self._counts["aborted"] += 1
            raise
        finally:
            self._running -= 1

    async def __call__(self, payload: Payload, ctx: dict[str, Any]) -> Result:
        ids, params = self._prepare(payload, stream=False)
        choices: dict[int, dict[str, Any]] = {}
        async for out in self._generate(ids, params, ctx):
            for c in out.outputs:
                choice = choices.setdefault(
                    c.index, {"index": c.index, "text": "", "token_ids": [], "finish_reason": None}
                )
                choice["text"] += c.text
                choice["token_ids"].extend(c.token_ids)
                choice["finish_reason"] = c.finish_reason or choice["finish_reason"]
        ordered = [choices[i] for i in sorted(choices)]
        generated = sum(len(c["token_ids"]) for c in ordered)
        self._counts["completion_tokens"] += generated
        result = {
            "text": ordered[0]["text"] if ordered else "",
            "choices": ordered,
            "usage": _usage(len(ids), generated),
        }
        return result, [], {}

    async def stream(self, payload: Payload, ctx: dict[str, Any]) -> AsyncIterator[Payload]:
        """Yield the new text as the engine makes it, then the usage (see the module doc); the
        engine's stream is read at most every ``engine.stream_batch_ms``, steps in between share
        a chunk."""
        ids, params = self._prepare(payload, stream=True)
        outputs = paced(self._generate(ids, params, ctx), self.settings.stream_batch_ms / 1000)
        generated = 0
        async with contextlib.aclosing(outputs):
            async for out in outputs:
                for c in out.outputs:
                    if not c.token_ids and c.finish_reason is None:
                        continue
                    generated += len(c.token_ids)
                    self._counts["completion_tokens"] += len(c.token_ids)
                    self._counts["chunks"] += 1
                    yield {
                        "index": c.index,
                        "text": c.text,
                        "token_ids": list(c.token_ids),
                        "finish_reason": c.finish_reason,
                    }
        yield {"usage": _usage(len(ids), generated)}

    def stats(self) -> dict[str, Any]:
        """Where the engine runs and what it is doing: ``unfinished_requests`` is the engine's
        own count (0 once aborted requests are gone), ``running`` the node's open calls."""
        return {
            "runtime": "vllm",
            "device": self.device,
            "model": self.spec.model_path,
            "max_model_len": self.max_model_len,
            "unfinished_requests": int(self.engine.get_num_unfinished_requests()),
            "running": self._running,
            **self._counts,
        }

    def shutdown(self) -> None:
        """Stop the engine and its processes."""
        self.engine.shutdown()

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            try:
                engine.shutdown()
            except Exception:  # interpreter shutdown: the engine's processes exit with it
                pass


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
