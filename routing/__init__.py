"""Router policies (pure, seedable objects) and the router node that applies them.

The weighted random split is wired into router nodes; the sticky A/B, canary, shadow, bandit,
feedback-token and experiment-report policies are pure building blocks for the routing issue.
"""

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
from routing.router import Router
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
