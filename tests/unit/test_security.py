"""Control token, secret redaction and media types (graphs.security), without Ray."""

from __future__ import annotations

import os
import stat

import pytest

from graphs.security import (
    CONTROL_AUTH_ENV,
    CONTROL_TOKEN_ENV,
    REDACTED,
    check_control_auth,
    check_json_media_type,
    control_token,
    control_token_path,
    redact_spec,
)
from nodes.errors import UnauthorizedError, UnsupportedMediaTypeError


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(CONTROL_TOKEN_ENV, raising=False)
    monkeypatch.delenv(CONTROL_AUTH_ENV, raising=False)
    return monkeypatch


def test_control_token_is_generated_once_with_mode_0600(
    tmp_path: os.PathLike[str], clean_env: pytest.MonkeyPatch
) -> None:
    first = control_token(str(tmp_path))
    assert first and len(first) >= 32
    assert control_token(str(tmp_path)) == first
    mode = stat.S_IMODE(os.stat(control_token_path(str(tmp_path))).st_mode)
    assert mode == 0o600


def test_control_token_from_the_environment_wins(
    tmp_path: os.PathLike[str], clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv(CONTROL_TOKEN_ENV, "from-a-secret")
    assert control_token(str(tmp_path)) == "from-a-secret"
    assert not os.path.exists(control_token_path(str(tmp_path)))


def test_control_auth_off_is_explicit_and_warns(
    tmp_path: os.PathLike[str], clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clean_env.setenv(CONTROL_AUTH_ENV, "off")
    assert control_token(str(tmp_path)) is None
    assert "open to anyone" in caplog.text
    check_control_auth(None, None)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer wrong", "s3cret", "bearer s3cret"])
def test_control_auth_refuses_anything_but_the_bearer_token(header: str | None) -> None:
    with pytest.raises(UnauthorizedError) as info:
        check_control_auth(header, "s3cret")
    assert info.value.status_code == 401 and "s3cret" not in str(info.value)
    check_control_auth("Bearer s3cret", "s3cret")


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=utf-8"])
def test_json_media_types(content_type: str) -> None:
    check_json_media_type(content_type)


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/jsonp"])
def test_other_media_types_are_415(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaTypeError) as info:
        check_json_media_type(content_type)
    assert info.value.status_code == 415


def test_redaction_hides_engine_env_and_secret_looking_kwargs() -> None:
    spec = {
        "nodes": [
            {
                "name": "llm",
                "init_kwargs": {
                    "api_key": "sk-1",
                    "nested": {"password": "p", "threshold": 0.5},
                    "client_secret": "s",
                    "auth_header": "h",
                    "size": 3,
                },
                "engine": {
                    "env": {"HF_TOKEN": "hf_x", "OMP_NUM_THREADS": "2"},
                    "extra_args": {"hf_token": "hf_y", "block_size": 16},
                },
            },
            {"name": "scale", "init_kwargs": {}},
        ]
    }
    out = redact_spec(spec)
    llm = out["nodes"][0]
    assert llm["init_kwargs"] == {
        "api_key": REDACTED,
        "nested": {"password": REDACTED, "threshold": 0.5},
        "client_secret": REDACTED,
        "auth_header": REDACTED,
        "size": 3,
    }
    assert llm["engine"]["env"] == {"HF_TOKEN": REDACTED, "OMP_NUM_THREADS": REDACTED}
    assert llm["engine"]["extra_args"] == {"hf_token": REDACTED, "block_size": 16}
    assert "sk-1" not in str(out) and "hf_x" not in str(out)
