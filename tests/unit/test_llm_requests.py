"""nodes.llm.requests: LLM node payloads parsed into generation requests, bad fields named."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nodes.errors import RequestValidationError
from nodes.llm.requests import ChatMessage, parse_generation


def test_payload_takes_a_prompt_or_messages_and_openai_sampling_names() -> None:
    req = parse_generation(
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stop": "\n"}
    )
    assert req.messages is not None and req.messages[0].text() == "hi"
    assert (req.max_tokens, req.stop, req.temperature, req.n) == (5, "\n", 1.0, 1)
    # /predict hands a BYTES tensor of shape [1]: the one string is the prompt.
    assert parse_generation({"prompt": np.asarray(["Hello"], dtype=object)}).prompt == "Hello"
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert ChatMessage(role="user", content=parts).text() == "ab"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"prompt": "x", "temperature": 3}, "temperature"),
        ({"prompt": "x", "top_p": 0}, "top_p"),
        ({"prompt": "x", "n": 100}, "n"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"prompt": "x", "min_tokens": 9, "max_tokens": 3}, "min_tokens"),
        ({"prompt": "x", "beam_width": 3}, "beam_width"),
        ({"prompt": "x", "seed": -(2**63) - 1}, "seed"),  # the engine takes 64-bit seeds
        ({"prompt": "x", "seed": 2**63}, "seed"),
        ({"prompt": "x", "top_k": 2**31}, "top_k"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"messages": []}, "messages"),
        ({}, "prompt"),
        ({"prompt": "x", "messages": [{"role": "user", "content": "y"}]}, "prompt"),
    ],
)
def test_bad_payloads_name_their_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestValidationError) as info:
        parse_generation(payload)
    assert info.value.field == field
    assert info.value.status_code == 422
