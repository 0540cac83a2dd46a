"""What the ingress keeps closed or hidden: the control token, secrets in ``/graph``, media types.

- Control endpoints (router weights, canary promote/rollback/pause, reset) need
  ``Authorization: Bearer <token>``. The token is ``$SERVEGRAPH_CONTROL_TOKEN`` when set, else one
  generated once into the state folder (``<state dir>/control.token``, mode 0600) and shared by
  every ingress replica that sees the folder. ``SERVEGRAPH_CONTROL_AUTH=off`` opens them (for
  local experiments only; every replica logs a warning).
- ``GET /<graph>/graph`` shows the spec with secrets redacted: every ``engine.env`` value, and
  values under ``init_kwargs`` / ``extra_args`` whose key looks like a secret.
- POST bodies must be ``application/json``: browsers send cross-site "simple" requests only as
  ``text/plain``, form data or without a type, so a JSON-only API cannot be driven by a web page
  a user happens to visit (no CSRF).
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

from nodes.errors import UnauthorizedError, UnsupportedMediaTypeError
from routing.keys import secret_file, state_dir

__all__ = [
    "CONTROL_AUTH_ENV",
    "CONTROL_TOKEN_ENV",
    "REDACTED",
    "check_control_auth",
    "check_json_media_type",
    "control_token",
    "control_token_path",
    "redact_spec",
]

log = logging.getLogger("servegraph")

#: Environment variable holding the control endpoints' bearer token.
CONTROL_TOKEN_ENV = "SERVEGRAPH_CONTROL_TOKEN"
#: ``off`` opens the control endpoints without a token (local experiments only).
CONTROL_AUTH_ENV = "SERVEGRAPH_CONTROL_AUTH"
#: What a redacted value reads.
REDACTED = "***"
_SECRET_KEY = re.compile(
    r"(secret|token|passw|pwd|api[_-]?key|access[_-]?key|private|credential|auth|signature|"
    r"(^|_)key$)",
    re.IGNORECASE,
)


def control_token_path(directory: str | None = None) -> str:
    """Where the generated control token lives: ``<state dir>/control.token``."""
    return os.path.join(state_dir(directory), "control.token")


def control_token(directory: str | None = None) -> str | None:
    """The bearer token control endpoints require; None when ``SERVEGRAPH_CONTROL_AUTH=off``.

    ``$SERVEGRAPH_CONTROL_TOKEN`` when set, else the state folder's ``control.token`` (created
    once, mode 0600).
    """
    if os.environ.get(CONTROL_AUTH_ENV, "").strip().lower() in ("off", "0", "false", "none"):
        log.warning(
            "%s=off: control endpoints (router weights, canary actions) are open to anyone "
            "who can reach the graph; use this for local experiments only",
            CONTROL_AUTH_ENV,
        )
        return None
    configured = os.environ.get(CONTROL_TOKEN_ENV, "").strip()
    if configured:
        return configured
    return secret_file(control_token_path(directory)).decode()


def check_control_auth(authorization: str | None, expected: str | None) -> None:
    """Require ``Authorization: Bearer <expected>`` (compared in constant time); nothing is
    required when ``expected`` is None (control auth switched off).

    Raises:
        UnauthorizedError: the header does not carry the token (401).
    """
    if expected is not None and not hmac.compare_digest(
        (authorization or "").encode(), f"Bearer {expected}".encode()
    ):
        raise UnauthorizedError(
            "control endpoints need 'Authorization: Bearer <token>': the token is "
            f"${CONTROL_TOKEN_ENV}, or the file control.token in the state folder"
        )


def check_json_media_type(content_type: str | None, *, allow_missing: bool = False) -> None:
    """Require an ``application/json`` body (parameters such as ``charset`` are fine).

    Raises:
        UnsupportedMediaTypeError: another or no media type (415).
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (allow_missing and not media):
        return
    got = repr(content_type) if content_type else "none"
    raise UnsupportedMediaTypeError(
        f"content-type must be application/json, got {got}; send 'Content-Type: application/json'"
    )


def _redact_kwargs(values: Any) -> Any:
    if isinstance(values, Mapping):
        return {
            k: REDACTED if _SECRET_KEY.search(str(k)) else _redact_kwargs(v)
            for k, v in values.items()
        }
    if isinstance(values, list):
        return [_redact_kwargs(v) for v in values]
    return values


def redact_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A JSON graph spec (``model_dump(mode="json")``) with its secrets replaced by ``***``:
    every ``engine.env`` value, and secret-looking keys under ``init_kwargs`` and
    ``engine.extra_args`` (any depth). Changes ``spec`` in place and returns it."""
    for node in spec.get("nodes", []):
        if isinstance(node.get("init_kwargs"), Mapping):
            node["init_kwargs"] = _redact_kwargs(node["init_kwargs"])
        engine = node.get("engine")
        if isinstance(engine, dict):
            if engine.get("env"):
                engine["env"] = dict.fromkeys(engine["env"], REDACTED)
            if isinstance(engine.get("extra_args"), Mapping):
                engine["extra_args"] = _redact_kwargs(engine["extra_args"])
    return spec
