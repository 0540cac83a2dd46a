"""HS256 JSON Web Tokens (RFC 7519 with an HMAC-SHA256 signature), verified with the standard
library only: what tells the ingress which tenant sent a request (:mod:`routing.quotas`).

Only ``alg: HS256`` is accepted (``none`` and every other algorithm are refused, so a token
cannot choose how it is checked); the signature is compared in constant time before the claims
are read; ``exp`` is required, ``nbf``, ``aud`` and ``iss`` are checked when present or asked
for. Error messages never repeat the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

__all__ = ["MAX_TOKEN_BYTES", "TokenError", "issue_hs256", "verify_hs256"]

#: Longest token read; longer ones are refused before anything is decoded.
MAX_TOKEN_BYTES = 8192


class TokenError(ValueError):
    """A token that cannot be trusted; the message says why (never what the token held)."""


def _b64decode(part: str) -> bytes:
    try:
        padded = (part + "=" * (-len(part) % 4)).encode("ascii")
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except (ValueError, UnicodeEncodeError):
        raise TokenError("token is not base64url") from None


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _json_part(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(part))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise TokenError(f"token {what} is not JSON") from None
    if not isinstance(value, dict):
        raise TokenError(f"token {what} is not a JSON object")
    return value


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TokenError(f"token claim {name!r} is not a number")
    return float(value)


def verify_hs256(
    token: str,
    key: bytes,
    now: float,
    *,
    leeway_s: float = 0.0,
    audience: str | None = None,
    issuer: str | None = None,
) -> dict[str, Any]:
    """The claims of ``token`` once its HS256 signature and times check out.

    Args:
        token: the compact JWT (``header.payload.signature``).
        key: the shared HMAC key.
        now: the current Unix time (injected, so tests are exact).
        leeway_s: clock skew allowed on ``exp`` and ``nbf``.
        audience: when given, ``aud`` must be it (or a list holding it).
        issuer: when given, ``iss`` must be it.

    Raises:
        TokenError: malformed, another algorithm, bad signature, expired, not yet valid,
            without ``exp``, or the wrong audience or issuer.
    """
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError(f"token is longer than {MAX_TOKEN_BYTES} bytes")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise TokenError("token is not a JWT (header.payload.signature)")
    header = _json_part(parts[0], "header")
    if header.get("alg") != "HS256":
        raise TokenError("token algorithm must be HS256")
    try:
        signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    except UnicodeEncodeError:
        raise TokenError("token is not base64url") from None
    expected = hmac.new(key, signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _b64decode(parts[2])):
        raise TokenError("token signature does not match")
    claims = _json_part(parts[1], "payload")
    exp = _number(claims, "exp")
    if exp is None:
        raise TokenError("token has no 'exp' claim")
    if now > exp + leeway_s:
        raise TokenError("token has expired")
    nbf = _number(claims, "nbf")
    if nbf is not None and now < nbf - leeway_s:
        raise TokenError("token is not valid yet")
    if audience is not None:
        aud = claims.get("aud")
        if aud != audience and not (isinstance(aud, list) and audience in aud):
            raise TokenError("token audience does not match")
    if issuer is not None and claims.get("iss") != issuer:
        raise TokenError("token issuer does not match")
    return claims


def issue_hs256(claims: dict[str, Any], key: bytes) -> str:
    """An HS256 token carrying ``claims`` (for tests and clients; the ingress only verifies)."""
    header = _b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64encode(signature)}"
