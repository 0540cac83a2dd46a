"""Multi-armed bandit router policies: pure, seedable, and synced between replicas in batches.

Every policy shares one interface (:class:`Bandit`): ``choose(context=None) -> arm``,
``update(arm, reward, context=None)`` (or ``stage`` / ``commit`` for all-or-nothing batches),
``take_delta()`` / ``apply(delta)`` / ``sync(state)`` for replicas, and ``to_dict()`` /
``Bandit.from_dict()`` for snapshots. None of them lets the statistics become non-finite
(:class:`NonFiniteStateError`).
"""

from routing.bandits._base import (
    Bandit,
    BanditDelta,
    Context,
    CountSumBandit,
    NonFiniteStateError,
    StagedUpdate,
)
from routing.bandits.epsilon_greedy import EpsilonGreedy
from routing.bandits.factory import make_bandit
from routing.bandits.linucb import LinUCB, check_context, features_from_payload
from routing.bandits.thompson import ThompsonBeta, ThompsonGaussian
from routing.bandits.ucb import UCB1
from routing.config import (
    BanditConfig,
    EpsilonGreedyConfig,
    LinUCBConfig,
    ThompsonBetaConfig,
    ThompsonGaussianConfig,
    UCB1Config,
)

__all__ = [
    "UCB1",
    "Bandit",
    "BanditConfig",
    "BanditDelta",
    "Context",
    "CountSumBandit",
    "EpsilonGreedy",
    "EpsilonGreedyConfig",
    "LinUCB",
    "LinUCBConfig",
    "NonFiniteStateError",
    "StagedUpdate",
    "ThompsonBeta",
    "ThompsonBetaConfig",
    "ThompsonGaussian",
    "ThompsonGaussianConfig",
    "UCB1Config",
    "check_context",
    "features_from_payload",
    "make_bandit",
]
