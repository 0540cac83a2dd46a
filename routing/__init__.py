"""Router policies (pure, seedable objects), the router that applies them in a deployment, and
the state its replicas share.

The policies (weighted, sticky A/B, canary, shadow, bandits, feedback tokens, experiment report)
never read a clock or a global RNG and are tested without Ray. :class:`Router` runs one router
node inside its deployment; :mod:`routing.state` holds the one authoritative state per router.
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
    ThompsonBeta,
    ThompsonGaussian,
    features_from_payload,
    make_bandit,
)
from routing.canary import Canary, CanaryConfig, CanaryGates, CanaryStateError
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
    FeedbackClaims,
    FeedbackTokenError,
    FeedbackTokens,
    ReplayGuard,
    load_feedback_key,
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
    "FeedbackClaims",
    "FeedbackTokenError",
    "FeedbackTokens",
    "InFlightLimiter",
    "LinUCB",
    "MirrorDecider",
    "ReplayGuard",
    "RotatingJsonlWriter",
    "Router",
    "ShadowComparator",
    "ShadowConfig",
    "StickyAB",
    "StickyKey",
    "ThompsonBeta",
    "ThompsonGaussian",
    "WeightedRandom",
    "extract_key",
    "features_from_payload",
    "load_feedback_key",
    "make_bandit",
]
