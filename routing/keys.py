"""Where a graph's router state lives, the keys that sign its feedback tokens, and what the
tokens are bound to.

One loader, :func:`feedback_keys`: the current key from ``$SERVEGRAPH_FEEDBACK_KEY`` (e.g. a
Kubernetes Secret) or else a random key created once in the state folder, plus the previous keys
of a rotation from ``$SERVEGRAPH_FEEDBACK_KEY_PREVIOUS``. :func:`graph_tokens` builds the graph's
:class:`~routing.tokens.FeedbackTokens` from them, bound to the graph's name and to each router's
:func:`config_hash`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Sequence
from typing import Any, Protocol

from routing.spec import RouterNode
from routing.tokens import FeedbackTokens, check_key

__all__ = [
    "FEEDBACK_KEY_ENV",
    "FEEDBACK_KEY_PREVIOUS_ENV",
    "STATE_DIR_ENV",
    "config_hash",
    "feedback_keys",
    "graph_tokens",
    "secret_file",
    "state_dir",
]

log = logging.getLogger(__name__)

#: Environment variable naming the folder snapshots (and the generated key) live in.
STATE_DIR_ENV = "SERVEGRAPH_STATE_DIR"
#: Environment variable holding the current signing key.
FEEDBACK_KEY_ENV = "SERVEGRAPH_FEEDBACK_KEY"
#: Environment variable holding earlier keys, comma-separated, accepted for verification only.
FEEDBACK_KEY_PREVIOUS_ENV = "SERVEGRAPH_FEEDBACK_KEY_PREVIOUS"
#: Fields of a router whose change makes its learned state (and its tokens) stale. The reward
#: and feature ranges are left out: they bound what comes in, not what was learned.
_HASHED = {"arms", "ab", "canary", "bandit", "shadow"}
_NOT_HASHED = {
    "bandit": {"reward_range", "feature_range"},
    # Which arm is active is state (switched at runtime), not identity; the timing is neither.
    "blue_green": {"active", "lease_s", "clock_skew_s"},
}


def state_dir(configured: str | None = None) -> str:
    """The snapshot folder: ``configured``, else ``$SERVEGRAPH_STATE_DIR``, else
    ``~/.servegraph/state``."""
    path = configured or os.environ.get(STATE_DIR_ENV) or os.path.join("~", ".servegraph", "state")
    return os.path.abspath(os.path.expanduser(path))


def config_hash(spec: RouterNode) -> str:
    """Hash of what a router's learned state depends on (arms and policy, not replica counts)."""
    # blue_green joins the hash only when set, so routers without it keep their hash.
    hashed = _HASHED | ({"blue_green"} if spec.blue_green is not None else set())
    fields = spec.model_dump(mode="json", include=hashed, exclude=_NOT_HASHED)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def feedback_keys(graph: str, directory: str | None = None) -> tuple[bytes, list[bytes]]:
    """The graph's feedback signing keys: ``(current, previous)``.

    The current key is ``$SERVEGRAPH_FEEDBACK_KEY`` when set (e.g. from a Kubernetes Secret),
    else a random key created once in the state folder (``<dir>/<graph>/feedback.key``, mode
    0600) and shared by every ingress replica that sees that folder: on a multi-node cluster,
    mount a shared volume there or set the variable. ``$SERVEGRAPH_FEEDBACK_KEY_PREVIOUS``
    (comma-separated) holds the keys of a rotation, accepted for verification only: to rotate,
    move the current key there and set a new one; drop it once the token ttl has passed.
    Surrounding whitespace (a Secret file's trailing newline) is stripped.

    Args:
        graph: the graph's name.
        directory: the state folder (default :func:`state_dir`).

    Raises:
        ValueError: a key shorter than 16 bytes; the message names its variable.
    """
    previous = [
        check_key(k.strip(), FEEDBACK_KEY_PREVIOUS_ENV)
        for k in os.environ.get(FEEDBACK_KEY_PREVIOUS_ENV, "").split(",")
        if k.strip()
    ]
    current = os.environ.get(FEEDBACK_KEY_ENV, "").strip()
    if current:
        return check_key(current, FEEDBACK_KEY_ENV), previous
    return secret_file(os.path.join(state_dir(directory), graph, "feedback.key")), previous


def secret_file(path: str) -> bytes:
    """The secret in ``path``, created once (256 random bits, mode 0600) by whichever process
    comes first; the others wait for it to be written. Used for the feedback key and the
    control token."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = os.stat(path).st_mode & 0o777
        if mode & 0o077:
            log.warning("secret file %s is readable by others (mode %o); chmod 600", path, mode)
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    for _ in range(50):  # another replica may be between creating and writing it
        with open(path) as f:
            key = f.read().strip()
        if key:
            return check_key(key, f"secret file {path}")
        time.sleep(0.02)
    raise RuntimeError(f"secret file {path} stayed empty")


class GraphLike(Protocol):
    """What :func:`graph_tokens` reads of a graph spec (:class:`graphs.spec.GraphSpec`)."""

    @property
    def name(self) -> str: ...
    @property
    def nodes(self) -> Sequence[Any]: ...
    @property
    def feedback_ttl_s(self) -> float: ...


def graph_tokens(spec: GraphLike, directory: str | None = None) -> FeedbackTokens:
    """The graph's :class:`FeedbackTokens`: its keys (:func:`feedback_keys`), its name, each
    router's :func:`config_hash` and its ``feedback_ttl_s``.

    Args:
        spec: the graph.
        directory: the state folder holding the generated key (default :func:`state_dir`).
    """
    key, previous = feedback_keys(spec.name, directory)
    routers = {n.name: config_hash(n) for n in spec.nodes if isinstance(n, RouterNode)}
    return FeedbackTokens(
        key, graph=spec.name, routers=routers, ttl_s=spec.feedback_ttl_s, previous_keys=previous
    )
