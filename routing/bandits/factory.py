"""Build the bandit policy a configuration (:data:`routing.config.BanditConfig`) describes."""

from __future__ import annotations

import random

from routing.bandits._base import Bandit
from routing.bandits.epsilon_greedy import EpsilonGreedy
from routing.bandits.linucb import LinUCB
from routing.bandits.thompson import ThompsonBeta, ThompsonGaussian
from routing.bandits.ucb import UCB1
from routing.config import (
    EpsilonGreedyConfig,
    LinUCBConfig,
    ThompsonBetaConfig,
    ThompsonGaussianConfig,
    UCB1Config,
)

__all__ = ["make_bandit"]


def make_bandit(
    config: EpsilonGreedyConfig
    | UCB1Config
    | ThompsonBetaConfig
    | ThompsonGaussianConfig
    | LinUCBConfig,
    n_arms: int,
    rng: random.Random | None = None,
) -> Bandit:
    """The policy a configuration describes, for a router with ``n_arms`` arms."""
    if isinstance(config, EpsilonGreedyConfig):
        return EpsilonGreedy(
            n_arms,
            rng,
            epsilon=config.epsilon,
            decay=config.decay,
            min_epsilon=config.min_epsilon,
            discount=config.discount,
        )
    if isinstance(config, UCB1Config):
        return UCB1(n_arms, rng, exploration=config.exploration, discount=config.discount)
    if isinstance(config, ThompsonBetaConfig):
        return ThompsonBeta(
            n_arms,
            rng,
            prior_alpha=config.prior_alpha,
            prior_beta=config.prior_beta,
            discount=config.discount,
        )
    if isinstance(config, ThompsonGaussianConfig):
        return ThompsonGaussian(
            n_arms,
            rng,
            prior_mean=config.prior_mean,
            prior_count=config.prior_count,
            prior_shape=config.prior_shape,
            prior_scale=config.prior_scale,
            discount=config.discount,
        )
    return LinUCB(
        n_arms,
        rng,
        dim=config.dim,
        alpha=config.alpha,
        ridge=config.ridge,
        discount=config.discount,
    )
