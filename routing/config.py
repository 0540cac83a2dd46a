"""Router policies' configurations: pure pydantic models the graph spec embeds.

Nothing here imports a policy's behaviour (nor :mod:`graphs` or :mod:`nodes`), so the spec can
import these models without the policies:

- :class:`ABConfig` (with :class:`StickyKey`): a sticky A/B split.
- :class:`CanaryConfig` (with :class:`CanaryGates`): a canary's steps and rollback gates.
- :class:`ShadowConfig` (with :class:`SampleLogConfig`): shadow traffic and its sample log.
- :class:`BlueGreenConfig`: which of two arms serves all traffic, and how a switch is timed.
- :data:`BanditConfig`: one frozen model per bandit algorithm. Every algorithm declares the
  rewards it accepts (``reward_range``; LinUCB also bounds its features with
  ``feature_range``): ``POST /<graph>/feedback`` answers 422 to a reward outside it and changes
  nothing, so a client cannot push the policy's statistics towards overflow. The defaults keep
  every statistic far from float overflow over billions of rewards.
"""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "WIDE_REWARDS",
    "ABConfig",
    "BanditConfig",
    "BlueGreenConfig",
    "CanaryConfig",
    "CanaryGates",
    "EpsilonGreedyConfig",
    "LinUCBConfig",
    "Range",
    "SampleLogConfig",
    "ShadowConfig",
    "StickyKey",
    "ThompsonBetaConfig",
    "ThompsonGaussianConfig",
    "UCB1Config",
]

# --- sticky A/B --------------------------------------------------------------------------------


class StickyKey(BaseModel):
    """Where a request's sticky key comes from: one header or one payload field.

    Example:
        >>> StickyKey(header="X-User-Id")
        StickyKey(header='X-User-Id', field=None)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    header: str | None = Field(
        None, min_length=1, description="HTTP header holding the key (case-insensitive)."
    )
    field: str | None = Field(
        None,
        min_length=1,
        description="Payload field holding the key; dots reach into nested objects (e.g. user.id).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> StickyKey:
        if (self.header is None) == (self.field is None):
            raise ValueError(
                "give exactly one of header or field, e.g. {header: X-User-Id} or {field: user_id}"
            )
        return self


class ABConfig(BaseModel):
    """An A/B router's stickiness settings (the weights are the router's arm weights)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: StickyKey | None = Field(
        None,
        description="Where the sticky key comes from; None assigns every request at random "
        "by weight.",
    )
    salt: str = Field(
        "",
        description="Mixed into the hash so that experiments over the same users split "
        "independently; changing it reshuffles every key.",
    )


# --- canary ------------------------------------------------------------------------------------


class CanaryGates(BaseModel):
    """Limits the candidate must stay within, compared with the stable arm over each step.

    Every gate is optional (None switches it off).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_error_rate: float | None = Field(
        None, ge=0, le=1, description="Highest error rate the candidate may have in a step."
    )
    max_error_rate_delta: float | None = Field(
        0.05,
        ge=0,
        le=1,
        description="Most the candidate's error rate may exceed the stable arm's, in absolute "
        "terms (0.05: 1 % stable allows up to 6 % candidate).",
    )
    max_p95_ratio: float | None = Field(
        1.5, gt=0, description="Highest candidate p95 latency as a multiple of the stable p95."
    )
    min_reward_delta: float | None = Field(
        None,
        description="Lowest candidate mean reward minus the stable mean reward (e.g. -0.02: "
        "at most 0.02 worse). Checked once both arms have min_reward_count rewards.",
    )
    min_reward_count: int = Field(
        30, ge=1, description="Rewards each arm needs before the reward gate is checked."
    )


class CanaryConfig(BaseModel):
    """How a canary ramps and what rolls it back.

    Example:
        >>> CanaryConfig(steps=[10, 50, 100], min_step_seconds=300).steps
        [10.0, 50.0, 100.0]
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: list[float] = Field(
        default_factory=lambda: [1.0, 5.0, 25.0, 50.0, 100.0],
        min_length=1,
        description="Candidate traffic share (percent, in (0, 100], increasing) of each step.",
    )
    min_step_seconds: float = Field(
        60.0, ge=0, description="Least time each step is held before the next one."
    )
    min_candidate_requests: int = Field(
        100,
        ge=1,
        description="Requests the candidate must serve in a step before the gates judge it "
        "and before the step can pass.",
    )
    min_stable_requests: int = Field(
        100,
        ge=1,
        description="Stable requests in the step needed to compare against the step's own "
        "figures; with fewer (e.g. at 100 %), the stable arm's figures over the whole canary "
        "are used, and with fewer still the relative gates are skipped.",
    )
    gates: CanaryGates = Field(
        default_factory=CanaryGates, description="Limits whose breach rolls the candidate back."
    )

    @field_validator("steps")
    @classmethod
    def _steps_increase(cls, steps: list[float]) -> list[float]:
        if any(not 0 < s <= 100 for s in steps):
            raise ValueError(f"every step must be a percentage in (0, 100], got {steps}")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"steps must increase strictly, got {steps} (e.g. [1, 5, 25, 100])")
        return steps


# --- blue/green --------------------------------------------------------------------------------


class BlueGreenConfig(BaseModel):
    """Blue/green: the active arm serves every request; a switch moves every replica of the
    router to the other arm at one instant.

    Example:
        >>> BlueGreenConfig(active="green").active
        'green'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    active: str = Field(
        min_length=1,
        description="The arm (its name, else its target) that serves all traffic. Changing it "
        "and redeploying switches like the 'switch' control action: at one instant for every "
        "replica, keeping the router's state.",
    )
    lease_s: float | None = Field(
        None,
        gt=0,
        le=600,
        description="How far ahead a switch is scheduled, so that every replica learns it "
        "before it happens; a replica whose view is older than this syncs before serving. "
        "Default: max(5 s, 3 x state.sync_interval_s).",
    )
    clock_skew_s: float = Field(
        0.5,
        ge=0,
        le=60,
        description="Most the replicas' clocks may differ from the state holder's; a switch is "
        "acknowledged this long after its instant. Must be under half the lease.",
    )


# --- shadow ------------------------------------------------------------------------------------


class SampleLogConfig(BaseModel):
    """Where sampled (input, primary, shadow) triples go, and how much of them is kept."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(description="JSONL file; rotated files get .1, .2... suffixes.")
    fraction: float = Field(
        0.01, ge=0, le=1, description="Share of compared shadow calls whose triple is logged."
    )
    max_bytes: int = Field(
        10_000_000, ge=1024, description="Largest size of one file before it is rotated."
    )
    max_files: int = Field(5, ge=1, description="Most files kept, the current one included.")


class ShadowConfig(BaseModel):
    """A shadow router's settings: what share of traffic is mirrored and how much at once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fraction: float = Field(1.0, ge=0, le=1, description="Share of requests mirrored.")
    max_in_flight: int = Field(
        16, ge=0, description="Most shadow calls running at once; the excess is dropped."
    )
    fields: list[str] | None = Field(
        None,
        description="Output fields to compare (dots reach into nested objects); None compares "
        "every field of both outputs.",
    )
    sample_log: SampleLogConfig | None = Field(
        None, description="Optional bounded, rotating JSONL log of compared pairs."
    )


# --- bandits -----------------------------------------------------------------------------------


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
