"""Shared pytest setup: one skip hook for the gpu/llm markers."""

from __future__ import annotations

import importlib.util
import shutil

import pytest


def _has_cuda() -> bool:
    return shutil.which("nvidia-smi") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons = {
        "gpu": None if _has_cuda() else "needs a CUDA GPU (nvidia-smi not found)",
        "llm": None
        if importlib.util.find_spec("vllm")
        else "needs vLLM (pip install -e '.[llm-cpu]')",
    }
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))
