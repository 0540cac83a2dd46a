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

vLLM (and transformers) are imported only when an :class:`LLMRunner` is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from nodes.calls import Payload, Result
from nodes.llm.engine_args import engine_env, engine_kwargs
from nodes.llm.engine_stats import EngineSignals, stat_logger
from nodes.llm.pacing import paced
from nodes.llm.prompts import completion_budget, prompt_token_ids
from nodes.llm.requests import GenerationRequest, parse_generation
from nodes.runtimes import replica_gpu_ids
from nodes.spec import EngineSettings, ModelNode

logger = logging.getLogger(__name__)


class LLMRunner:
    """Runs a ``runtime: vllm`` node: one ``AsyncLLM`` engine per replica.

    The engine batches concurrent requests itself (continuous batching), so the node needs no
    ``batching:``; give it ``max_ongoing_requests`` for the concurrency it should take.

    Args:
        spec: the node.
        on_generation: called as each call ends with its time to first token (s; streamed
            calls only, else None), its generated tokens and the seconds they took from the
            first token (from the start when not streamed).
    """

    def __init__(
        self,
        spec: ModelNode,
        on_generation: Callable[[float | None, int, float], None] | None = None,
    ):
        self.spec = spec
        self._on_generation = on_generation
        self.settings = settings = spec.engine or EngineSettings()
        gpus = replica_gpu_ids()
        self.device = "cuda" if gpus else "cpu"
        os.environ.update(engine_env(settings, on_gpu=bool(gpus)))
        from transformers import AutoTokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.signals = EngineSignals()
        self.engine = AsyncLLM.from_engine_args(
            AsyncEngineArgs(**engine_kwargs(spec, on_gpu=bool(gpus))),
            stat_loggers=[stat_logger(self.signals)],
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
        start, first, tokens, finished = time.monotonic(), None, 0, False
        try:
            engine_input = await self._engine_input(ids)
            async for out in self.engine.generate(engine_input, params, request_id):
                new = sum(len(c.token_ids) for c in out.outputs)
                if new and first is None:
                    first = time.monotonic()
                tokens += new
                if out.finished:
                    # Reported before the last item goes out: a consumer (``paced``) may
                    # close this stream as soon as it has that item.
                    finished = True
                    self._generated(params, start, first, tokens)
                yield out
        except (asyncio.CancelledError, GeneratorExit):
            if not finished:
                # engine.generate() aborts the request in the engine on the way out; count it.
                self._counts["aborted"] += 1
            raise
        finally:
            self._running -= 1

    def _generated(self, params: Any, start: float, first: float | None, tokens: int) -> None:
        """Report a finished call (see ``on_generation``): a call that is not streamed gets
        its tokens all at once, so its first token's time says nothing."""
        from vllm.sampling_params import RequestOutputKind

        streamed = params.output_kind == RequestOutputKind.DELTA
        since = first if streamed and first is not None else start
        ttft = first - start if streamed and first is not None else None
        if ttft is not None:
            self.signals.first_token(ttft)
        if self._on_generation is not None:
            self._on_generation(ttft, tokens, time.monotonic() - since)

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
        outputs = paced(
            self._generate(ids, params, ctx),
            self.settings.stream_batch_ms / 1000,
            last=lambda out: bool(out.finished),
        )
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

    def autoscaling_stats(self) -> dict[str, float]:
        """The engine's own load signals for the autoscaler (:class:`EngineSignals`)."""
        return self.signals.snapshot()

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
            "engine_waiting": self.signals.waiting,
            "kv_cache_usage": self.signals.kv_cache_usage,
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
