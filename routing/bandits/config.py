"""Bandit router configuration: one frozen model per algorithm, and :func:`make_bandit`.

Every algorithm declares the rewards it accepts (``reward_range``; LinUCB also bounds its
features with ``feature_range``): ``POST /<graph>/feedback`` answers 422 to a reward outside it and
changes nothing, so a client cannot push the policy's statistics towards overflow. The defaults
keep every statistic far from float overflow over billions of rewards.
"""

from __future__ import annotations

import math
import random
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from routing.bandits._base import Bandit
from routing.bandits.epsilon_greedy import EpsilonGreedy
from routing.bandits.linucb import LinUCB
from routing.bandits.thompson import ThompsonBeta, ThompsonGaussian
from routing.bandits.ucb import UCB1

__all__ = [
    "WIDE_REWARDS",
    "BanditConfig",
    "EpsilonGreedyConfig",
    "LinUCBConfig",
    "Range",
    "ThompsonBetaConfig",
    "ThompsonGaussianConfig",
    "UCB1Config",
    "make_bandit",
]


def _finite_range(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise ValueError(f"must be [low, high] with finite low < high, got [{low}, {high}]")
    return value


#: ``[low, high]``: both finite, ``low < high``.
Range = Annotated[tuple[float, float], AfterValidator(_finite_range)]
#: Rewards of real-valued policies: ±1e6 fits scores, revenues and latencies in ms, and keeps
#: sums of squares (1e12 per reward) finite for far more rewards than a router will see.
WIDE_REWARDS = (-1e6, 1e6)
_WIDE = "Rewards /feedback accepts, as [low, high] (finite, low < high); others get 422. "


class _BanditConfigBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    discount: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Forgetting factor applied to every arm's statistics before each reward "
        "(e.g. 0.999 remembers roughly the last 1,000 rewards); 1 forgets nothing.",
    )


class EpsilonGreedyConfig(_BanditConfigBase):
    """Epsilon-greedy; exploration ``max(min_epsilon, epsilon / (1 + decay * rewards))``."""

    algorithm: Literal["epsilon_greedy"] = Field(description="Algorithm name.")
    epsilon: float = Field(0.1, ge=0, le=1, description="Exploration probability at first.")
    decay: float = Field(0.0, ge=0, description="Decay rate of exploration (0: constant).")
    min_epsilon: float = Field(0.0, ge=0, le=1, description="Floor of exploration.")
    reward_range: Range = Field(
        WIDE_REWARDS,
        description=_WIDE + "Default [-1e6, 1e6]: real-valued rewards, far from overflow.",
    )

    @model_validator(mode="after")
    def _floor_below_start(self) -> EpsilonGreedyConfig:
        if self.min_epsilon > self.epsilon:
            raise ValueError(
                f"min_epsilon ({self.min_epsilon}) must not exceed epsilon ({self.epsilon})"
            )
        return self


class UCB1Config(_BanditConfigBase):
    """UCB1 for rewards in [0, 1]."""

    algorithm: Literal["ucb1"] = Field(description="Algorithm name.")
    exploration: float = Field(
        2.0, ge=0, description="Constant c of the bonus sqrt(c ln N / n); 2 is classic UCB1."
    )
    reward_range: Range = Field(
        (0.0, 1.0),
        description=_WIDE + "Default [0, 1]: UCB1's confidence bonus is scaled for rewards in "
        "[0, 1]; a wider range needs a larger exploration constant.",
    )


class ThompsonBetaConfig(_BanditConfigBase):
    """Beta-Bernoulli Thompson sampling for 0/1 rewards."""

    algorithm: Literal["thompson_beta"] = Field(description="Algorithm name.")
    prior_alpha: float = Field(1.0, gt=0, description="Prior successes of every arm.")
    prior_beta: float = Field(1.0, gt=0, description="Prior failures of every arm.")
    reward_range: Range = Field(
        (0.0, 1.0),
        description=_WIDE + "Default [0, 1]; it must lie within [0, 1]: Beta-Bernoulli rewards "
        "are success fractions.",
    )

    @model_validator(mode="after")
    def _rewards_are_fractions(self) -> ThompsonBetaConfig:
        low, high = self.reward_range
        if low < 0 or high > 1:
            raise ValueError(
                f"reward_range must lie within [0, 1] for thompson_beta (rewards are success "
                f"fractions), got [{low}, {high}]; use thompson_gaussian for other rewards"
            )
        return self


class ThompsonGaussianConfig(_BanditConfigBase):
    """Gaussian Thompson sampling (Normal-Inverse-Gamma prior) for real-valued rewards."""

    algorithm: Literal["thompson_gaussian"] = Field(description="Algorithm name.")
    prior_mean: float = Field(0.0, description="Prior guess of every arm's mean reward.")
    prior_count: float = Field(1.0, gt=0, description="Rewards the prior mean is worth.")
    prior_shape: float = Field(1.0, gt=0, description="Inverse-gamma shape of the variance.")
    prior_scale: float = Field(
        1.0, gt=0, description="Inverse-gamma scale; prior_scale / prior_shape ~ reward variance."
    )
    reward_range: Range = Field(
        WIDE_REWARDS,
        description=_WIDE + "Default [-1e6, 1e6]: real-valued rewards, far from overflow.",
    )


class LinUCBConfig(_BanditConfigBase):
    """LinUCB over numeric payload fields."""

    algorithm: Literal["linucb"] = Field(description="Algorithm name.")
    features: list[str] = Field(
        min_length=1,
        description="Payload fields holding the numeric features (dots reach into objects).",
    )
    intercept: bool = Field(True, description="Add a constant feature 1 (a bias per arm).")
    alpha: float = Field(1.0, ge=0, description="Exploration weight of the confidence width.")
    ridge: float = Field(1.0, gt=0, description="Ridge regularisation of each arm's model.")
    reward_range: Range = Field(
        (-1e3, 1e3),
        description=_WIDE + "Default [-1e3, 1e3]: ridge regression works best on rewards of "
        "order 1, so scale rewards (and features) towards it.",
    )
    feature_range: Range = Field(
        (-1e3, 1e3),
        description="Values each feature may take, as [low, high] (finite, low < high); a "
        "request with a feature outside gets 422 on /predict. Default [-1e3, 1e3]: keeps each "
        "arm's matrix sum(x x^T) finite and well conditioned; standardise features to it.",
    )

    @property
    def dim(self) -> int:
        """Length of the feature vector."""
        return len(self.features) + int(self.intercept)


#: Any bandit configuration; ``algorithm`` picks the model.
BanditConfig = Annotated[
    EpsilonGreedyConfig | UCB1Config | ThompsonBetaConfig | ThompsonGaussianConfig | LinUCBConfig,
    Field(discriminator="algorithm"),
]


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
