"""The LLM tier's apps: the bandit app is submitted early by the session (see tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.llm import bandit_app


@pytest.fixture(scope="session")
def llm_bandit_submitted(ray_cluster: None) -> None:
    """The LLM bandit app submitted: early by the session when it could, else now."""
    bandit_app.submit()
