"""A test session's own Ray token, router state folder and control token, whatever ``~`` holds.

Imports nothing of the product: the root conftest sets this environment before anything imports
Ray, which reads its token settings once per process, when it is imported.
"""

from __future__ import annotations

import os

#: The control token of the test session's cluster (``SERVEGRAPH_CONTROL_TOKEN``).
CONTROL_TOKEN = "test-control-token-0123456789"


def session_env(root: str) -> dict[str, str]:
    """What a test session's processes share: its own Ray token file, router state folder and
    control token."""
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": os.path.join(root, "ray", "auth_token"),
        "SERVEGRAPH_STATE_DIR": os.path.join(root, "state"),
        "SERVEGRAPH_CONTROL_TOKEN": CONTROL_TOKEN,
    }
