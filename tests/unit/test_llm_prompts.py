"""nodes.llm.prompts: chat templates, prompt tokens, the context budget, PromptTemplate."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from graphs.examples.tiny_llm import ensure_built
from nodes.errors import RequestValidationError
from nodes.llm.prompts import (
    PromptTemplate,
    completion_budget,
    prompt_token_ids,
    render_messages,
)
from nodes.llm.requests import ChatMessage, parse_generation


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ensure_built())


def test_chat_template_renders_messages_with_the_assistant_cue(tokenizer: Any) -> None:
    messages = [
        ChatMessage(role="system", content="be brief"),
        ChatMessage(role="user", content="hi"),
    ]
    assert render_messages(tokenizer, messages) == "<s>system: be brief\nuser: hi\nassistant:"
    chat = parse_generation({"messages": [{"role": "user", "content": "hi"}]})
    ids = prompt_token_ids(tokenizer, chat)
    assert tokenizer.decode(ids) == "<s>user: hi\nassistant:"
    assert ids.count(tokenizer.bos_token_id) == 1  # the template's BOS, not a second one
    prompt = prompt_token_ids(tokenizer, parse_generation({"prompt": "hi there"}))
    assert tokenizer.decode(prompt) == "hi there"


def test_a_tokenizer_without_chat_template_is_a_request_error(tokenizer: Any) -> None:
    class Plain:
        chat_template = None

    with pytest.raises(RequestValidationError) as info:
        render_messages(Plain(), [ChatMessage(role="user", content="hi")])
    assert info.value.field == "messages" and "PromptTemplate" in info.value.message


def test_completion_budget_fills_the_context_or_names_the_field() -> None:
    chat = parse_generation({"messages": [{"role": "user", "content": "x"}]})
    assert completion_budget(chat, 10, 256) == 246
    asked = parse_generation({"prompt": "x", "max_tokens": 100})
    assert completion_budget(asked, 10, 256) == 100
    with pytest.raises(RequestValidationError) as info:
        completion_budget(parse_generation({"prompt": "x", "max_tokens": 250}), 10, 256)
    assert info.value.field == "max_tokens" and "at most 246" in info.value.message
    with pytest.raises(RequestValidationError) as info:
        completion_budget(chat, 300, 256)
    assert info.value.field == "messages"
    at_least = parse_generation({"prompt": "x", "min_tokens": 247})  # more than the room left
    with pytest.raises(RequestValidationError) as info:
        completion_budget(at_least, 10, 256)
    assert info.value.field == "min_tokens" and "246 tokens" in info.value.message


def test_prompt_template_adds_system_wraps_prompts_and_fills_defaults() -> None:
    template = PromptTemplate(
        system="be brief", template="Q: {prompt}\nA:", defaults={"max_tokens": 8}
    )
    chat = template({"messages": [{"role": "user", "content": "hi"}], "temperature": 0})
    assert chat["messages"][0] == {"role": "system", "content": "be brief"}
    assert (chat["max_tokens"], chat["temperature"]) == (8, 0)
    own_system = [{"role": "system", "content": "mine"}, {"role": "user", "content": "hi"}]
    assert template({"messages": own_system})["messages"] == own_system
    done = template({"prompt": np.asarray(["{x}"], dtype=object), "max_tokens": 2})
    assert (done["prompt"], done["max_tokens"]) == ("Q: {x}\nA:", 2)
    with pytest.raises(ValueError, match="prompt"):
        PromptTemplate(template="no placeholder")
    with pytest.raises(ValueError, match="unknown sampling settings"):
        PromptTemplate(defaults={"max_tokenz": 3})
