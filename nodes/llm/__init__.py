"""LLM model nodes (``runtime: vllm``) and the pieces they are made of.

- :mod:`nodes.llm.requests`: OpenAI-compatible messages and sampling settings; payload parsing.
- :mod:`nodes.llm.prompts`: chat templates, prompt tokens, context budget, :class:`PromptTemplate`.
- :mod:`nodes.llm.pacing`: reading the engine's output stream at a steady pace.
- :mod:`nodes.llm.engine_args`: vLLM engine arguments and their build-time check.
- :mod:`nodes.llm.runner`: :class:`LLMRunner`, the engine in a node's deployment.

Everything but :class:`LLMRunner` is pure and runs without vLLM; importing this package does
not import vLLM.
"""

from nodes.llm.engine_args import (
    engine_arg_names,
    engine_env,
    engine_kwargs,
    unknown_engine_args,
)
from nodes.llm.pacing import paced
from nodes.llm.prompts import (
    PromptTemplate,
    completion_budget,
    prompt_token_ids,
    render_messages,
)
from nodes.llm.requests import (
    MAX_CHOICES,
    ChatMessage,
    ContentPart,
    GenerationRequest,
    SamplingFields,
    parse_generation,
)
from nodes.llm.runner import LLMRunner

__all__ = [
    "MAX_CHOICES",
    "ChatMessage",
    "ContentPart",
    "GenerationRequest",
    "LLMRunner",
    "PromptTemplate",
    "SamplingFields",
    "completion_budget",
    "engine_arg_names",
    "engine_env",
    "engine_kwargs",
    "paced",
    "parse_generation",
    "prompt_token_ids",
    "render_messages",
    "unknown_engine_args",
]
