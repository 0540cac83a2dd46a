"""Signed feedback tokens: the predict response hands one out, ``POST /<graph>/feedback`` brings
it back with a reward.

A token names the graph it was issued for, the router decisions it covers (router, arm and, for
contextual bandits, the features the decision was made on) with each router's configuration hash,
the request it came from and when it expires. It is signed with HMAC-SHA256 under a key shared by
the graph's replicas (:func:`routing.keys.feedback_keys`) and reads ``v2.<claims>.<signature>``,
both parts unpadded URL-safe base64, so it travels in JSON, headers and URLs unchanged.

:meth:`FeedbackTokens.verify` rejects malformed (400), forged or other graphs' (401) and expired
(410) tokens, and decisions of a router whose configuration changed since (410): a reward earned
under one set of arms or features must not train another. :class:`routing.replay.ReplayGuard`
rejects a token used before (409). Each rejection is a subclass of :class:`FeedbackTokenError`
carrying its HTTP status. Verify and check for replay *before* applying a reward, so a rejected
token changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from nodes.errors import GraphError

__all__ = [
    "FEEDBACK_HEADER",
    "MIN_KEY_BYTES",
    "Decision",
    "ExpiredTokenError",
    "FeedbackClaims",
    "FeedbackTokenError",
    "FeedbackTokens",
    "ForgedTokenError",
    "MalformedTokenError",
    "ReplayGuardFullError",
    "ReplayedTokenError",
    "check_key",
]

#: Shortest key accepted, in bytes (HMAC-SHA256 keys should carry at least 128 bits).
MIN_KEY_BYTES = 16
#: Response header carrying a response's feedback token (also ``feedback_token`` in JSON bodies).
FEEDBACK_HEADER = "X-Feedback-Token"
#: Longest token accepted, in characters; anything longer is malformed before any work.
MAX_TOKEN_CHARS = 8192
#: v1 tokens (up to 0.x) named neither their graph nor their routers' configurations.
_VERSION = "v2"
_CLAIMS = {"jti", "rid", "iat", "exp", "g", "h", "d"}
_B64 = re.compile(r"^[A-Za-z0-9_-]*$")
_NO_ROUTERS: Mapping[str, str] = MappingProxyType({})


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
        graph: the graph it was issued for.
        router_hashes: each decision's router's configuration hash when it was issued.
    """

    token_id: str
    request_id: str
    issued_at: float
    expires_at: float
    decisions: tuple[Decision, ...]
    graph: str = ""
    router_hashes: Mapping[str, str] = field(default_factory=dict)


def check_key(key: str | bytes, source: str = "feedback signing key") -> bytes:
    """``key`` as bytes (text is UTF-8 encoded) if it is at least :data:`MIN_KEY_BYTES` long.

    Raises:
        ValueError: a shorter key; the message names ``source``.
    """
    raw = key.encode() if isinstance(key, str) else bytes(key)
    if len(raw) < MIN_KEY_BYTES:
        raise ValueError(
            f"{source} must be at least {MIN_KEY_BYTES} bytes, got {len(raw)} (make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return raw


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
    """Issues and verifies the feedback tokens of one graph.

    Build it with :func:`routing.keys.graph_tokens` (keys, routers and ttl from the graph).

    Args:
        key: signing key (>= 16 bytes; text is UTF-8 encoded).
        graph: the graph's name; a token of another graph is refused, even under the same key.
        routers: each router's configuration hash (:func:`routing.keys.config_hash`) by name; a
            decision of a router whose hash changed since the token was issued is refused.
        ttl_s: default lifetime of a token, in seconds.
        previous_keys: keys still accepted for verification during a key rotation.
    """

    def __init__(
        self,
        key: str | bytes,
        *,
        graph: str,
        routers: Mapping[str, str] = _NO_ROUTERS,
        ttl_s: float = 86_400.0,
        previous_keys: Sequence[str | bytes] = (),
    ):
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        if not isinstance(graph, str) or not graph:
            raise ValueError(f"graph must be a non-empty string, got {graph!r}")
        self._keys = [check_key(key)] + [
            check_key(k, "previous feedback signing key") for k in previous_keys
        ]
        self.graph = graph
        self.routers = dict(routers)
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
            "g": self.graph,
            "h": {d.router: self.routers.get(d.router, "") for d in items},
            "d": [d.to_json() for d in items],
        }
        body = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
        signed = f"{_VERSION}.{body}"
        return f"{signed}.{_b64encode(self._sign(self._keys[0], signed))}"

    def verify(self, token: Any, now: float) -> FeedbackClaims:
        """The token's claims if it is well-formed, authentic, this graph's, unexpired, and its
        routers are configured as they were when it was issued.

        Raises:
            MalformedTokenError: not a token of this format, or it names a router this graph
                lacks (400).
            ForgedTokenError: the signature does not match, or it was issued for another graph
                (401).
            ExpiredTokenError: ``now`` is at or past its expiry, or a router changed its
                configuration since (410).
        """
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise MalformedTokenError(
                f"feedback token must be a non-empty string of at most {MAX_TOKEN_CHARS} chars"
            )
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _VERSION:
            raise MalformedTokenError(
                f"feedback token must read {_VERSION}.<claims>.<signature> (tokens of other "
                "versions are not accepted)"
            )
        signature = _b64decode(parts[2])
        body = _b64decode(parts[1])
        signed = f"{parts[0]}.{parts[1]}"
        # Check every key (no early exit) so timing says nothing about which one matched.
        matches = [hmac.compare_digest(self._sign(k, signed), signature) for k in self._keys]
        if not any(matches):
            raise ForgedTokenError("feedback token signature does not match")
        claims = self._parse(body)
        if claims.graph != self.graph:
            raise ForgedTokenError(
                f"feedback token was issued for graph {claims.graph!r}, not {self.graph!r}"
            )
        if now >= claims.expires_at:
            raise ExpiredTokenError(f"feedback token expired at {claims.expires_at} (now {now})")
        for router, issued_hash in claims.router_hashes.items():
            if self.routers and router not in self.routers:
                raise MalformedTokenError(
                    f"token names router {router!r}, which graph {self.graph!r} lacks"
                )
            if issued_hash != self.routers.get(router, ""):
                raise ExpiredTokenError(
                    f"router {router!r} changed its configuration since this token was issued"
                )
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
        if not isinstance(raw, dict) or set(raw) != _CLAIMS:
            raise MalformedTokenError(f"feedback token claims must be {', '.join(sorted(_CLAIMS))}")
        if not isinstance(raw["jti"], str) or not raw["jti"] or not isinstance(raw["rid"], str):
            raise MalformedTokenError("feedback token jti and rid must be strings")
        if not _is_finite_number(raw["iat"]) or not _is_finite_number(raw["exp"]):
            raise MalformedTokenError("feedback token iat and exp must be numbers")
        if not isinstance(raw["g"], str):
            raise MalformedTokenError("feedback token g (graph) must be a string")
        if not isinstance(raw["d"], list) or not raw["d"]:
            raise MalformedTokenError("feedback token must cover at least one decision")
        decisions = tuple(Decision.from_json(d) for d in raw["d"])
        hashes = raw["h"]
        if (
            not isinstance(hashes, dict)
            or set(hashes) != {d.router for d in decisions}
            or not all(isinstance(v, str) for v in hashes.values())
        ):
            raise MalformedTokenError(
                "feedback token h must map each decision's router to its configuration hash"
            )
        return FeedbackClaims(
            raw["jti"], raw["rid"], raw["iat"], raw["exp"], decisions, raw["g"], hashes
        )

    def __repr__(self) -> str:
        return (
            f"FeedbackTokens(graph={self.graph!r}, routers={sorted(self.routers)}, "
            f"ttl_s={self.ttl_s}, keys={len(self._keys)})"
        )
