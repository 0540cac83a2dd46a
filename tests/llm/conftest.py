"""The LLM tier's apps, started early by the session (see tests/conftest.py) or else here."""

from __future__ import annotations

import pytest

from tests.llm import early


@pytest.fixture(scope="session")
def llm_bandit_submitted(ray_cluster: None) -> None:
    """The LLM bandit app submitted: early by the session when it could, else now."""
    early.submit()
