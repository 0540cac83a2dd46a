"""Router policies (pure, seedable objects), the router that applies them in a deployment, and
the state its replicas share.

The policies (weighted, sticky A/B, canary, blue/green, shadow, bandits, feedback tokens,
experiment report) never read a clock or a global RNG and are tested without Ray.
:class:`Router` runs one router node inside its deployment; :mod:`routing.state` holds the one
authoritative state per router and :mod:`routing.store` keeps it (every change logged before it
is applied; recovered after damage). :func:`graph_tokens` builds a graph's feedback tokens from
its keys (:func:`feedback_keys`). Admission by tenant:
:class:`TokenBucket`, :class:`TenantResolver` (header or HS256 token), :class:`QuotaLedger` (the
budget the ingress replicas share) and :class:`ReplicaQuotas` (one replica's leases of it).
"""

from routing.ab import StickyAB, extract_key
from routing.bandits import (
    UCB1,
    Bandit,
    BanditDelta,
    EpsilonGreedy,
    LinUCB,
    NonFiniteStateError,
    ThompsonBeta,
    ThompsonGaussian,
    features_from_payload,
    make_bandit,
)
from routing.bluegreen import BlueGreen
from routing.canary import Canary, CanaryStateError
from routing.config import (
    ABConfig,
    BanditConfig,
    BlueGreenConfig,
    CanaryConfig,
    CanaryGates,
    ShadowConfig,
    StickyKey,
)
from routing.errors import StateUnavailableError
from routing.hs256 import TokenError, issue_hs256, verify_hs256
from routing.keys import (
    FEEDBACK_KEY_ENV,
    FEEDBACK_KEY_PREVIOUS_ENV,
    config_hash,
    feedback_keys,
    graph_tokens,
    state_dir,
)
from routing.ledger import ReplicaLedger
from routing.limits import LimitsSpec, TenantLimits, TenantSource
from routing.quota_client import ReplicaQuotas
from routing.quota_ledger import QuotaLedger, QuotaLedgerActor
from routing.quotas import RateLimitedError, TenantResolver, TokenBucket
from routing.replay import ReplayGuard, ReplaySegments
from routing.report import ExperimentStats
from routing.router import Router
from routing.shadow import InFlightLimiter, MirrorDecider
from routing.shadow_compare import ShadowComparator
from routing.shadow_log import RotatingJsonlWriter
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

__all__ = [
    "FEEDBACK_KEY_ENV",
    "FEEDBACK_KEY_PREVIOUS_ENV",
    "UCB1",
    "ABConfig",
    "Bandit",
    "BanditConfig",
    "BanditDelta",
    "BlueGreen",
    "BlueGreenConfig",
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
    "LimitsSpec",
    "LinUCB",
    "MalformedTokenError",
    "MirrorDecider",
    "NonFiniteStateError",
    "QuotaLedger",
    "QuotaLedgerActor",
    "RateLimitedError",
    "ReplayGuard",
    "ReplaySegments",
    "ReplayedTokenError",
    "ReplicaLedger",
    "ReplicaQuotas",
    "RotatingJsonlWriter",
    "Router",
    "ShadowComparator",
    "ShadowConfig",
    "StateUnavailableError",
    "StickyAB",
    "StickyKey",
    "TenantLimits",
    "TenantResolver",
    "TenantSource",
    "ThompsonBeta",
    "ThompsonGaussian",
    "TokenBucket",
    "TokenError",
    "WeightedRandom",
    "config_hash",
    "extract_key",
    "features_from_payload",
    "feedback_keys",
    "graph_tokens",
    "issue_hs256",
    "make_bandit",
    "state_dir",
    "verify_hs256",
]
