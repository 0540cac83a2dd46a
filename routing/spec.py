"""Router nodes: arms, shadow and state-sharing settings, and the policies' sections."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from nodes.spec import NAME_PATTERN, Frozen, NodeBase, Ref, refs
from routing.config import ABConfig, BanditConfig, BlueGreenConfig, CanaryConfig, ShadowConfig


class Arm(Frozen):
    """One arm of a router: what it runs and its share of traffic."""

    target: Ref = Field(description="Node name or chain of node names this arm runs.")
    weight: float | None = Field(
        None,
        ge=0,
        description="Share of traffic; the arms' weights sum to 1. Omit on every arm for an "
        "equal split; canary and bandit routers set the split themselves.",
    )
    name: str | None = Field(
        None,
        pattern=NAME_PATTERN,
        description="Arm name in reports, metrics and the canary history (default: its target, "
        "a chain joined by '->').",
    )

    @property
    def label(self) -> str:
        """The arm's name: ``name`` if given, else its target."""
        return self.name or "->".join(refs(self.target))


class ShadowSpec(ShadowConfig):
    """Mirror requests to a shadow target; the client gets the primary arm's result only."""

    target: Ref = Field(description="Node name or chain of node names that gets the mirror.")
    timeout_s: float = Field(
        10.0, gt=0, description="A shadow call still running after this long is abandoned."
    )


class RouterStateSpec(Frozen):
    """How a router's replicas share state: one authoritative holder, synced in batches."""

    sync_interval_s: float = Field(
        0.5, gt=0, le=60, description="Longest a replica keeps its figures before syncing."
    )
    sync_events: int = Field(
        256, ge=1, description="Requests after which a replica syncs early (batched sync)."
    )
    snapshot_interval_s: float = Field(
        5.0,
        gt=0,
        description="How often the state holder writes a full JSON snapshot; every change in "
        "between goes to an append-only log first, so a restart loses nothing.",
    )
    dir: str | None = Field(
        None,
        description="Where snapshots live (default $SERVEGRAPH_STATE_DIR, else "
        "~/.servegraph/state); use a shared filesystem on multi-node clusters.",
    )
    fsync: Literal["batch", "always", "never"] = Field(
        "batch",
        description="When the change log is forced to disk: 'batch' once per call to the state "
        "holder (a replica's sync batch, a reward, an operator action) before it is "
        "acknowledged; 'always' after every change; 'never' leaves it to the OS (a process "
        "crash loses nothing, a machine crash may lose the last changes). Snapshots are "
        "fsynced unless 'never'.",
    )


#: Router policies: at most one of these sections; none is a weighted split.
ROUTER_POLICIES = ("ab", "canary", "bandit", "blue_green")


class RouterNode(NodeBase):
    """Sends each request to one arm: weighted, sticky A/B, canary or bandit; optional shadow."""

    kind: Literal["router"] = Field(description="Node kind.")
    arms: list[Arm] = Field(min_length=1, description="Arms and their weights.")
    seed: int | None = Field(None, description="RNG seed for reproducible splits.")
    ab: ABConfig | None = Field(
        None, description="Sticky A/B: requests with the same key always get the same arm."
    )
    canary: CanaryConfig | None = Field(
        None,
        description="Canary rollout over two arms (stable first, then candidate), gated on "
        "errors, latency and reward.",
    )
    bandit: BanditConfig | None = Field(
        None,
        description="Multi-armed bandit learning from rewards posted to /feedback "
        "(algorithm defaults to thompson_beta).",
    )
    blue_green: BlueGreenConfig | None = Field(
        None,
        description="Blue/green over two arms: the active arm serves all traffic; the 'switch' "
        "and 'rollback' control actions (or a changed 'active') move every replica at once.",
    )
    shadow: ShadowSpec | None = Field(
        None, description="Mirror a share of requests to a shadow target and compare outputs."
    )
    fallback: Ref | None = Field(
        None,
        description="Node or chain that serves a request when its arm failed (after retries) "
        "or the arm's breaker is open; e.g. the stable arm's target, or a cheap model.",
    )
    state: RouterStateSpec = Field(
        default_factory=lambda: RouterStateSpec(),
        description="How the router's replicas share state and snapshot it.",
    )
    user_config: dict[str, Any] | None = Field(
        None,
        description="Serve user_config of the router's deployment: {weights: [...]} changes a "
        "weighted or A/B split on redeploy without restarting replicas.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_bandit(cls, data: Any) -> Any:
        # Thompson sampling is the default bandit: best regret, and robust to batched sync.
        bandit = data.get("bandit") if isinstance(data, dict) else None
        if isinstance(bandit, dict) and "algorithm" not in bandit:
            data = {**data, "bandit": {"algorithm": "thompson_beta", **bandit}}
        return data

    @field_validator("arms")
    @classmethod
    def _weights_sum_to_one(cls, arms: list[Arm]) -> list[Arm]:
        given = [a.weight for a in arms if a.weight is not None]
        if given and len(given) != len(arms):
            raise ValueError("give a weight on every arm or on none (none: an equal split)")
        total = sum(given)
        if given and not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"weights must sum to 1, got {round(total, 6)}")
        labels = [a.label for a in arms]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"arm names must be unique; give arms a name ({dupes} repeat)")
        return arms

    @field_validator("blue_green")
    @classmethod
    def _blue_green_arms(
        cls, blue_green: BlueGreenConfig | None, info: ValidationInfo
    ) -> BlueGreenConfig | None:
        arms = info.data.get("arms")
        if blue_green is None or arms is None:
            return blue_green
        if len(arms) != 2:
            raise ValueError(f"blue/green needs exactly 2 arms, got {len(arms)}")
        if arms[0].weight is not None:
            raise ValueError("blue/green arms take no weight: 'active' sets the split")
        labels = [a.label for a in arms]
        if blue_green.active not in labels:
            raise ValueError(
                f"active must name one of the arms ({', '.join(labels)}), got {blue_green.active!r}"
            )
        return blue_green

    @model_validator(mode="after")
    def _one_policy(self) -> RouterNode:
        chosen = [p for p in ROUTER_POLICIES if getattr(self, p) is not None]
        if len(chosen) > 1:
            raise ValueError(
                f"give at most one of {', '.join(ROUTER_POLICIES)}; got {', '.join(chosen)}"
            )
        weighted = self.arms[0].weight is not None
        if self.canary is not None:
            if len(self.arms) != 2:
                raise ValueError(
                    f"a canary needs exactly 2 arms (stable, then candidate), got {len(self.arms)}"
                )
            if weighted:
                raise ValueError("canary arms take no weight: the ramp's steps set the split")
        if self.bandit is not None and weighted:
            raise ValueError("bandit arms take no weight: the bandit sets the split")
        if self.blue_green is not None:
            lease, skew = self.switch_lease_s, self.blue_green.clock_skew_s
            if skew * 2 >= lease:
                raise ValueError(
                    f"blue_green.clock_skew_s must be under half of the lease ({lease} s), "
                    f"got {skew}"
                )
            if lease < 2 * self.state.sync_interval_s:
                raise ValueError(
                    "blue_green.lease_s must be at least 2 x state.sync_interval_s (replicas "
                    f"sync within it), got {lease} and {self.state.sync_interval_s}"
                )
        if self.user_config is not None:
            weights = self.user_config.get("weights")
            if set(self.user_config) != {"weights"} or self.policy not in ("weighted", "ab"):
                raise ValueError(
                    "user_config takes {weights: [...]} only, on weighted or ab routers"
                )
            if not isinstance(weights, list) or len(weights) != len(self.arms):
                raise ValueError(f"user_config.weights needs {len(self.arms)} numbers")
        return self

    @property
    def policy(self) -> str:
        """``weighted``, ``ab``, ``canary``, ``bandit`` or ``blue_green``."""
        return next((p for p in ROUTER_POLICIES if getattr(self, p) is not None), "weighted")

    @property
    def switch_lease_s(self) -> float:
        """How far ahead a blue/green switch is scheduled: ``blue_green.lease_s``, else
        max(5 s, 3 x ``state.sync_interval_s``)."""
        configured = self.blue_green.lease_s if self.blue_green is not None else None
        return configured or max(5.0, 3 * self.state.sync_interval_s)

    def weights(self) -> list[float]:
        """The configured split (equal when no arm has a weight; blue/green: all on the active
        arm)."""
        if self.blue_green is not None:
            return [1.0 if a.label == self.blue_green.active else 0.0 for a in self.arms]
        if self.arms[0].weight is None:
            return [1.0 / len(self.arms)] * len(self.arms)
        return [float(a.weight or 0.0) for a in self.arms]

    def children(self) -> list[str]:
        targets = [arm.target for arm in self.arms]
        if self.shadow is not None:
            targets.append(self.shadow.target)
        if self.fallback is not None:
            targets.append(self.fallback)
        return list(dict.fromkeys(n for t in targets for n in refs(t)))

    def calls(self) -> list[tuple[list[str], float]]:
        out = [(refs(arm.target), w) for arm, w in zip(self.arms, self.weights())]
        if self.shadow is not None:  # mirrored traffic loads the shadow target too
            out.append((refs(self.shadow.target), self.shadow.fraction))
        return out
