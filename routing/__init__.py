"""Router policies (pure, seedable objects), the router that applies them in a deployment, and
the state its replicas share.

The policies (weighted, sticky A/B, canary, shadow, bandits, feedback tokens, experiment report)
never read a clock or a global RNG and are tested without Ray. :class:`Router` runs one router
node inside its deployment; :mod:`routing.state` holds the one authoritative state per router
and :mod:`routing.store` keeps it. :func:`graph_tokens` builds a graph's feedback tokens from its
keys (:func:`feedback_keys`).
``Router`` is imported lazily: the graph spec imports the policies' configs from here.
"""

from typing import TYPE_CHECKING, Any

from routing.ab import ABConfig, StickyAB, StickyKey, extract_key
from routing.bandits import (
    UCB1,
    Bandit,
    BanditConfig,
    BanditDelta,
    EpsilonGreedy,
    LinUCB,
    NonFiniteStateError,
    ThompsonBeta,
    ThompsonGaussian,
    features_from_payload,
    make_bandit,
)
from routing.canary import Canary, CanaryConfig, CanaryGates, CanaryStateError
from routing.keys import (
    FEEDBACK_KEY_ENV,
    FEEDBACK_KEY_PREVIOUS_ENV,
    config_hash,
    feedback_keys,
    graph_tokens,
    state_dir,
)
from routing.replay import ReplayGuard, ReplaySegments
from routing.report import ExperimentStats
from routing.shadow import (
    InFlightLimiter,
    MirrorDecider,
    RotatingJsonlWriter,
    ShadowComparator,
    ShadowConfig,
)
from routing.tokens import (
    Decision,
    ExpiredTokenError,
    FeedbackClaims,
    FeedbackTokenError,
    FeedbackTokens,
    ForgedTokenError,
    MalformedTokenError,
    ReplayedTokenError,
)
from routing.weighted import WeightedRandom

if TYPE_CHECKING:
    from routing.router import Router


def __getattr__(name: str) -> Any:
    if name == "Router":
        from routing.router import Router

        return Router
    raise AttributeError(f"module 'routing' has no attribute {name!r}")


__all__ = [
    "FEEDBACK_KEY_ENV",
    "FEEDBACK_KEY_PREVIOUS_ENV",
    "UCB1",
    "ABConfig",
    "Bandit",
    "BanditConfig",
    "BanditDelta",
    "Canary",
    "CanaryConfig",
    "CanaryGates",
    "CanaryStateError",
    "Decision",
    "EpsilonGreedy",
    "ExperimentStats",
    "ExpiredTokenError",
    "FeedbackClaims",
    "FeedbackTokenError",
    "FeedbackTokens",
    "ForgedTokenError",
    "InFlightLimiter",
    "LinUCB",
    "MalformedTokenError",
    "MirrorDecider",
    "NonFiniteStateError",
    "ReplayGuard",
    "ReplaySegments",
    "ReplayedTokenError",
    "RotatingJsonlWriter",
    "Router",
    "ShadowComparator",
    "ShadowConfig",
    "StickyAB",
    "StickyKey",
    "ThompsonBeta",
    "ThompsonGaussian",
    "WeightedRandom",
    "config_hash",
    "extract_key",
    "features_from_payload",
    "feedback_keys",
    "graph_tokens",
    "make_bandit",
    "state_dir",
]
