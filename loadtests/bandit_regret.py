"""Bandit policies in simulation: cumulative regret on simulated arms, in-process, fixed seeds.

No Ray, no HTTP: each policy of :mod:`routing.bandits` plays simulated arms for ``--rounds``
rounds per seed, and the expected regret (best arm's mean minus the chosen arm's mean, summed)
is averaged over ``--seeds`` seeds. Scenarios:

- ``bernoulli``: 5 arms paying 1 with p = 0.10, 0.15, 0.20, 0.25, 0.30 (click-through-like).
- ``bernoulli-batched``: the same arms served by 4 replicas that sync with the shared state
  every 200 requests (:meth:`~routing.bandits.Bandit.take_delta` / ``apply`` / ``sync``), with
  every reward arriving 500 requests late: what a deployed router sees.
- ``gaussian``: 5 arms with normal rewards (means 0.0 ... 0.4, sd 1).
- ``contextual``: 4 arms whose click probability is linear in 2 features drawn per request;
  regret is against the best arm *for that request*, so context-free policies cannot reach 0.
- ``drifting``: 2 Bernoulli arms (0.7 / 0.4) that swap half-way; discounted vs plain Thompson.

Prints a markdown table and writes ``reports/bandit_regret.md`` and ``bandit_regret.png``.

    python loadtests/bandit_regret.py [--rounds 10000] [--seeds 5]
"""

from __future__ import annotations

import math
import os
import random
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import _harness as h
import numpy as np
from _harness import plots

from routing.bandits import (
    UCB1,
    Bandit,
    Context,
    CountSumBandit,
    EpsilonGreedy,
    LinUCB,
    ThompsonBeta,
    ThompsonGaussian,
)

BERNOULLI = [0.10, 0.15, 0.20, 0.25, 0.30]
GAUSSIAN = [0.0, 0.1, 0.2, 0.3, 0.4]
# Contextual arms: p(click) = clip(theta . [1, x1, x2]), x ~ U(-1, 1)^2.
THETAS = np.array(
    [[0.30, 0.15, 0.00], [0.30, -0.15, 0.00], [0.30, 0.00, 0.15], [0.30, 0.00, -0.15]]
)

Factory = Callable[[int, random.Random], Bandit]


class Uniform(CountSumBandit):
    """Baseline: every arm with equal probability, learning nothing."""

    algorithm = "uniform"

    def params(self) -> dict[str, Any]:
        return {}

    def choose(self, context: Context = None) -> int:
        return self._rng.randrange(self.n_arms)


POLICIES: dict[str, Factory] = {
    "uniform (baseline)": lambda k, rng: Uniform(k, rng),
    "epsilon-greedy 0.1": lambda k, rng: EpsilonGreedy(k, rng, epsilon=0.1),
    "epsilon-greedy decay": lambda k, rng: EpsilonGreedy(
        k, rng, epsilon=1.0, decay=0.01, min_epsilon=0.005
    ),
    "ucb1": lambda k, rng: UCB1(k, rng),
    "thompson beta": lambda k, rng: ThompsonBeta(k, rng),
    "thompson gaussian": lambda k, rng: ThompsonGaussian(k, rng, prior_scale=0.25),
    "linucb (no context)": lambda k, rng: LinUCB(k, rng, dim=1, alpha=0.5),
    "linucb": lambda k, rng: LinUCB(k, rng, dim=3, alpha=0.5),
    "thompson beta, discount 0.99": lambda k, rng: ThompsonBeta(k, rng, discount=0.99),
}


@dataclass
class Run:
    """One scenario x policy: regret curve per seed and decision cost."""

    scenario: str
    policy: str
    curves: list[np.ndarray]
    best_share: list[float]
    us_per_round: float

    @property
    def final(self) -> list[float]:
        return [float(c[-1]) for c in self.curves]


def simulate(
    factory: Factory,
    rounds: int,
    seed: int,
    draw: Callable[[random.Random, int, np.ndarray | None, int], float],
    means: Callable[[np.ndarray | None, int], np.ndarray],
    contexts: Callable[[random.Random], np.ndarray | None] | None = None,
    *,
    n_arms: int,
    replicas: int = 1,
    sync_every: int = 0,
    delay: int = 0,
) -> tuple[np.ndarray, float, float]:
    """Play ``rounds`` rounds; returns (cumulative regret, best-arm share at the end, µs/round)."""
    env = random.Random(10_000 + seed)
    authority = factory(n_arms, random.Random(seed))
    local = (
        [authority]
        if replicas == 1
        else [factory(n_arms, random.Random(seed * 100 + r)) for r in range(replicas)]
    )
    pending: deque[tuple[int, int, float, np.ndarray | None]] = deque()
    regret = np.zeros(rounds)
    total, tail_best = 0.0, 0
    tail = max(1, rounds // 10)
    start = time.perf_counter()
    for t in range(rounds):
        context = contexts(env) if contexts else None
        replica = local[t % len(local)]
        ctx = None if context is None else context.tolist()
        arm = replica.choose(ctx)
        mu = means(context, t)
        total += float(mu.max() - mu[arm])
        regret[t] = total
        if t >= rounds - tail and mu[arm] == mu.max():
            tail_best += 1
        pending.append((t % len(local), arm, draw(env, arm, context, t), context))
        while pending and len(pending) > delay:
            who, played, reward, seen = pending.popleft()
            local[who].update(played, reward, None if seen is None else seen.tolist())
        if replicas > 1 and sync_every and (t + 1) % sync_every == 0:
            for r in local:
                authority.apply(r.take_delta())
            state = authority.to_dict()
            for r in local:
                r.sync(state)
    elapsed = time.perf_counter() - start
    return regret, tail_best / tail, elapsed / rounds * 1e6


def bernoulli_draw(
    probs: list[float],
) -> Callable[[random.Random, int, np.ndarray | None, int], float]:
    return lambda env, arm, ctx, t: 1.0 if env.random() < probs[arm] else 0.0


def scenarios(rounds: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(scenario, policy, simulate kwargs) for every run."""
    bern: dict[str, Any] = {
        "draw": bernoulli_draw(BERNOULLI),
        "means": lambda ctx, t: np.array(BERNOULLI),
        # A constant context [1]: LinUCB without features is a ridge UCB; the rest ignore it.
        "contexts": lambda env: np.ones(1),
        "n_arms": len(BERNOULLI),
    }
    gauss: dict[str, Any] = {
        "draw": lambda env, arm, ctx, t: env.gauss(GAUSSIAN[arm], 1.0),
        "means": lambda ctx, t: np.array(GAUSSIAN),
        "n_arms": len(GAUSSIAN),
    }

    def ctx_means(ctx: np.ndarray | None, t: int) -> np.ndarray:
        if ctx is None:
            raise ValueError("the contextual scenario draws a context every round")
        return np.clip(THETAS @ ctx, 0.0, 1.0)

    contextual: dict[str, Any] = {
        "draw": lambda env, arm, ctx, t: 1.0 if env.random() < ctx_means(ctx, t)[arm] else 0.0,
        "means": ctx_means,
        "contexts": lambda env: np.array([1.0, env.uniform(-1, 1), env.uniform(-1, 1)]),
        "n_arms": len(THETAS),
    }

    def drift_probs(t: int) -> list[float]:
        return [0.7, 0.4] if t < rounds // 2 else [0.4, 0.7]

    drifting: dict[str, Any] = {
        "draw": lambda env, arm, ctx, t: 1.0 if env.random() < drift_probs(t)[arm] else 0.0,
        "means": lambda ctx, t: np.array(drift_probs(t)),
        "n_arms": 2,
    }
    runs: list[tuple[str, str, dict[str, Any]]] = []
    for name in POLICIES:
        if name not in ("thompson gaussian", "linucb", "thompson beta, discount 0.99"):
            runs.append(("bernoulli", name, bern))
    for name in ("uniform (baseline)", "epsilon-greedy decay", "ucb1", "thompson beta"):
        runs.append(
            ("bernoulli-batched", name, {**bern, "replicas": 4, "sync_every": 200, "delay": 500})
        )
    for name in (
        "uniform (baseline)",
        "epsilon-greedy 0.1",
        "epsilon-greedy decay",
        "thompson gaussian",
    ):
        runs.append(("gaussian", name, gauss))
    for name in ("uniform (baseline)", "thompson beta", "ucb1"):
        runs.append(("contextual", name, contextual))
    runs.append(("contextual", "linucb", contextual))
    for name in ("thompson beta", "thompson beta, discount 0.99", "ucb1"):
        runs.append(("drifting", name, drifting))
    return runs


def run_all(rounds: int, seeds: int) -> list[Run]:
    out = []
    for scenario, policy, kwargs in scenarios(rounds):
        curves, shares, costs = [], [], []
        for seed in range(seeds):
            curve, share, cost = simulate(POLICIES[policy], rounds, seed, **kwargs)
            curves.append(curve)
            shares.append(share)
            costs.append(cost)
        out.append(Run(scenario, policy, curves, shares, statistics.median(costs)))
    return out


def table(runs: list[Run], rounds: int) -> str:
    lines = [
        f"| scenario | policy | regret after {rounds:,} (mean ± sd) | regret/round, last 10 % "
        "| best-arm share, last 10 % | µs/round |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in runs:
        final = r.final
        sd = statistics.stdev(final) if len(final) > 1 else 0.0
        tail = max(1, rounds // 10)
        per_round = statistics.fmean(float(c[-1] - c[-tail - 1]) / tail for c in r.curves)
        lines.append(
            f"| {r.scenario} | {r.policy} | {statistics.fmean(final):.1f} ± {sd:.1f} "
            f"| {per_round:.4f} | {100 * statistics.fmean(r.best_share):.1f} % "
            f"| {r.us_per_round:.0f} |"
        )
    return "\n".join(lines)


def plot(runs: list[Run], path: str) -> None:
    names = list(dict.fromkeys(r.scenario for r in runs))
    colors = {p: f"C{i}" for i, p in enumerate(dict.fromkeys(r.policy for r in runs))}
    cols = 3
    rows = math.ceil(len(names) / cols)
    plt = plots.pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax, scenario in zip(axes.flat, names):
        for r in runs:
            if r.scenario == scenario:
                ax.plot(np.mean(r.curves, axis=0), label=r.policy, color=colors[r.policy])
        ax.set_title(scenario)
        ax.set_xlabel("round")
        ax.set_ylabel("cumulative regret")
        ax.legend(fontsize=7)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    plots.save(fig, path, dpi=80)


def main(argv: list[str] | None = None) -> None:
    parser = h.parser(__doc__, worker=False)
    parser.add_argument("--rounds", type=int, default=10_000, help="rounds per seed (10000)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per policy (5)")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    start = time.process_time()
    runs = run_all(args.rounds, args.seeds)
    cpu = time.process_time() - start
    body = table(runs, args.rounds)
    print(body)
    report = [
        "# Bandit regret: routing.bandits policies on simulated arms",
        "",
        f"Generated by `python loadtests/bandit_regret.py --rounds {args.rounds} --seeds "
        f"{args.seeds}` ({len(runs) * args.seeds} runs in {cpu:.0f} s of CPU). Expected regret "
        "(best arm's mean minus the chosen arm's), cumulative, mean over seeds 0.."
        f"{args.seeds - 1}; µs/round is one choose + one update in-process.",
        "",
        "- bernoulli: 5 arms, p = " + ", ".join(f"{p:.2f}" for p in BERNOULLI) + ".",
        "- bernoulli-batched: same arms, 4 replicas syncing with the shared state every 200 "
        "requests (take_delta / apply / sync), every reward 500 requests late.",
        "- gaussian: 5 arms, normal rewards, means "
        + ", ".join(f"{m:.1f}" for m in GAUSSIAN)
        + ", sd 1 (ThompsonGaussian with prior_scale 0.25).",
        "- contextual: 4 arms, p = clip(theta . [1, x1, x2]) with x ~ U(-1, 1)^2 per request; "
        "regret against the best arm for each request (every arm's mean over contexts is "
        "0.30, so context-free policies cannot beat uniform). LinUCB alpha 0.5 on [1, x1, x2].",
        "- drifting: 2 arms 0.7 / 0.4 that swap half-way.",
        "",
        body,
        "",
    ]
    os.makedirs(args.reports_dir, exist_ok=True)
    if not args.no_plot:
        plot(runs, os.path.join(args.reports_dir, "bandit_regret.png"))
        report.append("Plot: `bandit_regret.png` (mean cumulative regret per scenario).")
    h.write_markdown("bandit_regret", "\n".join(report), args.reports_dir)


if __name__ == "__main__":
    main()
