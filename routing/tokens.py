"""Signed feedback tokens: the predict response hands one out, ``POST /<graph>/feedback`` brings
it back with a reward.

A token names the router decisions it covers (router, arm and, for contextual bandits, the
features the decision was made on), the request it came from and when it expires, and is signed
with HMAC-SHA256 under a key shared by the graph's replicas (configuration or the
``SERVEGRAPH_FEEDBACK_KEY`` environment variable). It reads ``v1.<claims>.<signature>``, both
parts unpadded URL-safe base64, so it travels in JSON, headers and URLs unchanged.

:meth:`FeedbackTokens.verify` rejects malformed (400), forged (401) and expired (410) tokens;
:class:`ReplayGuard` rejects a token used before (409). Each rejection is a subclass of
:class:`FeedbackTokenError` carrying its HTTP status. Verify and check for replay *before*
applying a reward, so a rejected token changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import json
import math
import os
import re
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graphs.errors import GraphError

__all__ = [
    "FEEDBACK_KEY_ENV",
    "Decision",
    "ExpiredTokenError",
    "FeedbackClaims",
    "FeedbackTokenError",
    "FeedbackTokens",
    "ForgedTokenError",
    "MalformedTokenError",
    "ReplayGuard",
    "ReplayGuardFullError",
    "ReplayedTokenError",
    "load_feedback_key",
]

#: Environment variable holding the signing key when the configuration gives none.
FEEDBACK_KEY_ENV = "SERVEGRAPH_FEEDBACK_KEY"
#: Shortest key accepted, in bytes (HMAC-SHA256 keys should carry at least 128 bits).
MIN_KEY_BYTES = 16
#: Longest token accepted, in characters; anything longer is malformed before any work.
MAX_TOKEN_CHARS = 8192
_VERSION = "v1"
_B64 = re.compile(r"^[A-Za-z0-9_-]*$")


class FeedbackTokenError(GraphError, ValueError):
    """A feedback token was rejected; ``status_code`` is the HTTP status to answer with."""

    status_code = 400


class MalformedTokenError(FeedbackTokenError):
    """Not a token of this format: wrong shape, encoding or claims (HTTP 400)."""

    status_code = 400


class ForgedTokenError(FeedbackTokenError):
    """The signature does not match the claims under any configured key (HTTP 401)."""

    status_code = 401


class ExpiredTokenError(FeedbackTokenError):
    """The token was valid but its time is up (HTTP 410)."""

    status_code = 410


class ReplayedTokenError(FeedbackTokenError):
    """The token was already used (HTTP 409)."""

    status_code = 409


class ReplayGuardFullError(FeedbackTokenError):
    """The replay guard holds ``max_entries`` unexpired tokens and accepts no more (HTTP 503).

    It fails closed: accepting a token it could not remember would allow replaying it.
    """

    status_code = 503


@dataclass(frozen=True)
class Decision:
    """One router decision a token covers.

    Attributes:
        router: the router node's name.
        arm: index of the arm it chose.
        context: the feature vector a contextual bandit chose on (None for the others).
    """

    router: str
    arm: int
    context: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.router, str) or not self.router:
            raise ValueError(f"decision router must be a non-empty string, got {self.router!r}")
        if isinstance(self.arm, bool) or not isinstance(self.arm, int) or self.arm < 0:
            raise ValueError(f"decision arm must be an integer >= 0, got {self.arm!r}")
        if self.context is not None and not all(_is_finite_number(x) for x in self.context):
            raise ValueError("decision context must hold finite numbers")

    def to_json(self) -> list[Any]:
        """Compact JSON form: ``[router, arm]`` or ``[router, arm, context]``."""
        if self.context is None:
            return [self.router, self.arm]
        return [self.router, self.arm, [float(x) for x in self.context]]

    @classmethod
    def from_json(cls, value: Any) -> Decision:
        """Parse :meth:`to_json`'s output; raises MalformedTokenError on anything else."""
        if not isinstance(value, list) or len(value) not in (2, 3):
            raise MalformedTokenError("each decision must be [router, arm] or [router, arm, ctx]")
        router, arm = value[0], value[1]
        if not isinstance(router, str) or not router:
            raise MalformedTokenError("decision router must be a non-empty string")
        if isinstance(arm, bool) or not isinstance(arm, int) or arm < 0:
            raise MalformedTokenError("decision arm must be an integer >= 0")
        context = None
        if len(value) == 3:
            raw = value[2]
            if not isinstance(raw, list) or not all(_is_finite_number(x) for x in raw):
                raise MalformedTokenError("decision context must be a list of finite numbers")
            context = tuple(float(x) for x in raw)
        return cls(router, arm, context)


def _decision(router: str, arm: int, context: Sequence[float] | None = None) -> Decision:
    # Accepts numpy integers and any sequence of numbers, as routers produce them.
    ctx = None if context is None else tuple(float(x) for x in context)
    return Decision(router, int(arm), ctx)


def _is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class FeedbackClaims:
    """What a verified token says.

    Attributes:
        token_id: unique id of the token (the replay guard's key).
        request_id: the request the predict response answered.
        issued_at: when it was issued (the issuer's ``now``).
        expires_at: when it stops being accepted.
        decisions: the router decisions the reward applies to.
    """

    token_id: str
    request_id: str
    issued_at: float
    expires_at: float
    decisions: tuple[Decision, ...]


def load_feedback_key(
    configured: str | bytes | None = None,
    *,
    env: Mapping[str, str] | None = None,
    var: str = FEEDBACK_KEY_ENV,
) -> bytes:
    """The signing key: ``configured`` if given, else the environment variable ``var``.

    Args:
        configured: key from the configuration (text is UTF-8 encoded).
        env: environment to read (default ``os.environ``).
        var: name of the environment variable.

    Raises:
        ValueError: no key anywhere, or one shorter than 16 bytes.
    """
    value: str | bytes | None = configured
    if value is None:
        value = (os.environ if env is None else env).get(var)
    if value is None or value == "" or value == b"":
        raise ValueError(
            f"no feedback signing key: set {var} (e.g. to the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`) or configure one"
        )
    key = value.encode() if isinstance(value, str) else bytes(value)
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"feedback signing key must be at least {MIN_KEY_BYTES} bytes, got {len(key)}"
        )
    return key


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _B64.match(text) or len(text) % 4 == 1:
        raise MalformedTokenError("token parts must be unpadded URL-safe base64")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedTokenError("token parts must be unpadded URL-safe base64") from None


class FeedbackTokens:
    """Issues and verifies signed feedback tokens.

    Args:
        key: signing key (>= 16 bytes; text is UTF-8 encoded). See :func:`load_feedback_key`.
        ttl_s: default lifetime of a token, in seconds.
        previous_keys: keys still accepted for verification during a key rotation.
    """

    def __init__(
        self,
        key: str | bytes,
        *,
        ttl_s: float = 86_400.0,
        previous_keys: Sequence[str | bytes] = (),
    ):
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        self._keys = [load_feedback_key(k) for k in (key, *previous_keys)]
        self.ttl_s = ttl_s

    def issue(
        self,
        decisions: Iterable[Decision | tuple[str, int] | tuple[str, int, Sequence[float]]],
        request_id: str,
        now: float,
        *,
        ttl_s: float | None = None,
        token_id: str | None = None,
    ) -> str:
        """A signed token for the given decisions of one request.

        Args:
            decisions: :class:`Decision` objects, ``(router, arm)`` pairs or
                ``(router, arm, context)`` triples.
            request_id: the request's id (returned with the claims).
            now: issue time, seconds (the same clock :meth:`verify` gets).
            ttl_s: lifetime; default the instance's ``ttl_s``.
            token_id: unique id; default 128 random bits (set it only in tests).
        """
        items = [d if isinstance(d, Decision) else _decision(*d) for d in decisions]
        if not items:
            raise ValueError("a feedback token must cover at least one decision")
        ttl = self.ttl_s if ttl_s is None else ttl_s
        if not ttl > 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl}")
        claims = {
            "jti": token_id if token_id is not None else secrets.token_urlsafe(16),
            "rid": request_id,
            "iat": now,
            "exp": now + ttl,
            "d": [d.to_json() for d in items],
        }
        body = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
        signed = f"{_VERSION}.{body}"
        return f"{signed}.{_b64encode(self._sign(self._keys[0], signed))}"

    def verify(self, token: Any, now: float) -> FeedbackClaims:
        """The token's claims if it is well-formed, authentic and unexpired.

        Raises:
            MalformedTokenError: not a token of this format (400).
            ForgedTokenError: the signature does not match (401).
            ExpiredTokenError: ``now`` is at or past its expiry (410).
        """
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise MalformedTokenError(
                f"feedback token must be a non-empty string of at most {MAX_TOKEN_CHARS} chars"
            )
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _VERSION:
            raise MalformedTokenError(f"feedback token must read {_VERSION}.<claims>.<signature>")
        signature = _b64decode(parts[2])
        body = _b64decode(parts[1])
        signed = f"{parts[0]}.{parts[1]}"
        # Check every key (no early exit) so timing says nothing about which one matched.
        matches = [hmac.compare_digest(self._sign(k, signed), signature) for k in self._keys]
        if not any(matches):
            raise ForgedTokenError("feedback token signature does not match")
        claims = self._parse(body)
        if now >= claims.expires_at:
            raise ExpiredTokenError(f"feedback token expired at {claims.expires_at} (now {now})")
        return claims

    @staticmethod
    def _sign(key: bytes, signed: str) -> bytes:
        return hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest()

    @staticmethod
    def _parse(body: bytes) -> FeedbackClaims:
        try:
            raw = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise MalformedTokenError("feedback token claims are not JSON") from None
        if not isinstance(raw, dict) or set(raw) != {"jti", "rid", "iat", "exp", "d"}:
            raise MalformedTokenError("feedback token claims must be jti, rid, iat, exp and d")
        if not isinstance(raw["jti"], str) or not raw["jti"] or not isinstance(raw["rid"], str):
            raise MalformedTokenError("feedback token jti and rid must be strings")
        if not _is_finite_number(raw["iat"]) or not _is_finite_number(raw["exp"]):
            raise MalformedTokenError("feedback token iat and exp must be numbers")
        if not isinstance(raw["d"], list) or not raw["d"]:
            raise MalformedTokenError("feedback token must cover at least one decision")
        decisions = tuple(Decision.from_json(d) for d in raw["d"])
        return FeedbackClaims(raw["jti"], raw["rid"], raw["iat"], raw["exp"], decisions)

    def __repr__(self) -> str:
        return f"FeedbackTokens(ttl_s={self.ttl_s}, keys={len(self._keys)})"


class ReplayGuard:
    """Remembers used token ids until they expire, so each token is accepted once.

    Bounded: ids are forgotten ``grace_s`` after their token expires (a replay after that is
    rejected as expired by :meth:`FeedbackTokens.verify`), and at most ``max_entries`` are
    held; a full guard rejects new tokens (:class:`ReplayGuardFullError`) rather than forget
    one that could still be replayed. Thread-safe; snapshot with :meth:`to_dict`.

    Args:
        max_entries: most token ids remembered at once (size for rate x ttl).
        grace_s: how long after expiry an id is kept; covers clock skew between the process
            that verified the token and this one.
    """

    def __init__(self, max_entries: int = 1_000_000, grace_s: float = 60.0):
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        if grace_s < 0:
            raise ValueError(f"grace_s must be >= 0, got {grace_s}")
        self.max_entries = max_entries
        self.grace_s = grace_s
        self._seen: dict[str, float] = {}
        self._expiries: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def check_and_mark(self, claims: FeedbackClaims, now: float) -> None:
        """Accept the token once: raise if its id was seen, else remember it.

        Raises:
            ReplayedTokenError: the token was accepted before (409).
            ReplayGuardFullError: ``max_entries`` unexpired ids are held (503).
        """
        with self._lock:
            self._purge(now)
            if claims.token_id in self._seen:
                raise ReplayedTokenError(f"feedback token {claims.token_id!r} was already used")
            if len(self._seen) >= self.max_entries:
                raise ReplayGuardFullError(
                    f"replay guard holds {self.max_entries} unexpired tokens; raise max_entries "
                    "or shorten the token ttl"
                )
            forget_at = claims.expires_at + self.grace_s
            self._seen[claims.token_id] = forget_at
            heapq.heappush(self._expiries, (forget_at, claims.token_id))

    def __contains__(self, token_id: object) -> bool:
        return token_id in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def _purge(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            _, token_id = heapq.heappop(self._expiries)
            self._seen.pop(token_id, None)

    def to_dict(self) -> dict[str, Any]:
        """JSON state: the remembered ids and when each is forgotten."""
        with self._lock:
            return {
                "max_entries": self.max_entries,
                "grace_s": self.grace_s,
                "seen": dict(self._seen),
            }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplayGuard:
        """Rebuild from :meth:`to_dict`'s output."""
        guard = cls(int(data["max_entries"]), float(data["grace_s"]))
        guard._seen = {str(k): float(v) for k, v in data["seen"].items()}
        guard._expiries = [(v, k) for k, v in guard._seen.items()]
        heapq.heapify(guard._expiries)
        return guard

    def __repr__(self) -> str:
        return f"ReplayGuard(entries={len(self)}, max_entries={self.max_entries})"
