"""A discrete-event simulator of one autoscaled node, to compare policies without Ray.

Requests arrive by a non-homogeneous Poisson process following a
:class:`~autoscale.traces.LoadTrace`, wait in one FIFO queue (Ray Serve's handle-side queue,
with ideal routing) and are served by replicas (:class:`~autoscale.sim_node.SimulatedNode`),
one request at a time each, with lognormal (or exponential) service times. A new replica serves
only after ``startup_s``; a removed one finishes what it is serving. Every
``decision_period_s`` the control loop asks a policy for the replica count:

* ``"ours"``: :func:`autoscale.policy.decide` on :class:`~autoscale.metrics.NodeMetrics` of the
  last ``metrics_window_s`` (what replicas report through ``record_autoscaling_stats``).
* ``"ray_default"``: :func:`ray_default_policy`, a re-implementation of Ray Serve 2.60's
  ``replica_queue_length_autoscaling_policy`` with the delays, scaling factors and bounds the
  controller wraps around it, fed the way Ray feeds it: ongoing requests sampled every
  ``min(look_back_period_s * 0.2, metrics_interval_s)``, pushed every ``metrics_interval_s``,
  pruned to ``look_back_period_s`` and averaged over time.

Both policies see the same arrivals and service times for a given seed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from autoscale.policy import decide
from autoscale.ray_default import RayDefaultConfig, ray_default_policy
from autoscale.settings import ScalingSettings
from autoscale.sim_node import RayMetricPipeline, SimulatedNode
from autoscale.traces import LoadTrace, sample_arrivals, standard_traces

__all__ = [
    "POLICIES",
    "SimConfig",
    "SimResult",
    "compare",
    "default_settings",
    "simulate",
    "tuned_ray_config",
]

PolicyName = Literal["ours", "ray_default", "ray_tuned"]
POLICIES: tuple[PolicyName, ...] = ("ours", "ray_default", "ray_tuned")


@dataclass(frozen=True)
class SimConfig:
    """The simulated node and control loop.

    Attributes:
        duration_s: Length of the simulated trace.
        decision_period_s: How often the policy is asked.
        metrics_window_s: Window of ongoing requests and p95 in :class:`NodeMetrics` (ours).
        rate_window_s: Window of arrival rate and service time in :class:`NodeMetrics`:
            longer, because one second of Poisson arrivals is too noisy to size from.
        service_time_ms: Mean service time of one request.
        service_dist: ``lognormal`` (with ``service_sigma``) or ``exponential``.
        service_sigma: Sigma of the lognormal service time.
        startup_s: Delay before a new replica serves.
        slots: Requests one replica serves at once (its ``max_ongoing_requests`` when the
            node waits on I/O; 1 when it computes one request at a time).
        initial_replicas: Replicas at time 0.
        slo_p95_ms: SLO the report judges every 1 s window against.
        report_window_s: Width of the report's windows.
    """

    duration_s: float = 600.0
    decision_period_s: float = 0.5
    metrics_window_s: float = 1.0
    rate_window_s: float = 5.0
    service_time_ms: float = 50.0
    service_dist: Literal["lognormal", "exponential"] = "lognormal"
    service_sigma: float = 0.5
    startup_s: float = 2.0
    slots: int = 1
    initial_replicas: int = 2
    slo_p95_ms: float = 250.0
    report_window_s: float = 1.0


@dataclass(frozen=True, eq=False)
class SimResult:
    """One simulated run.

    Attributes:
        trace: Trace name.
        policy: ``ours``, ``ray_default`` or ``ray_tuned``.
        slo_attainment: Percent of report windows whose p95 latency was within the SLO.
        replica_seconds: Sum over time of replicas held (starting ones included).
        time_to_first_scale_up_s: From the load change to the first scale-up (None: never).
        reversals: Changes of scaling direction (up then down, or down then up).
        t: Start of each report window (s).
        rate: Trace rate at each window's middle (req/s).
        replicas: Replicas held at each window's end.
        p95_ms: p95 latency of the requests finished in each window (NaN: none).
    """

    trace: str
    policy: str
    slo_attainment: float
    replica_seconds: float
    time_to_first_scale_up_s: float | None
    reversals: int
    t: np.ndarray = field(repr=False)
    rate: np.ndarray = field(repr=False)
    replicas: np.ndarray = field(repr=False)
    p95_ms: np.ndarray = field(repr=False)

    def summary(self) -> dict[str, Any]:
        """The figures without the time series."""
        return {
            "trace": self.trace,
            "policy": self.policy,
            "slo_attainment": self.slo_attainment,
            "replica_seconds": self.replica_seconds,
            "time_to_first_scale_up_s": self.time_to_first_scale_up_s,
            "reversals": self.reversals,
        }


def _service_times(n: int, cfg: SimConfig, rng: np.random.Generator) -> np.ndarray:
    mean = cfg.service_time_ms / 1000.0
    if cfg.service_dist == "exponential":
        return rng.exponential(mean, n)
    mu = math.log(mean) - cfg.service_sigma**2 / 2
    return rng.lognormal(mu, cfg.service_sigma, n)


def simulate(
    trace: LoadTrace,
    policy: PolicyName,
    *,
    settings: ScalingSettings | None = None,
    ray_config: RayDefaultConfig | None = None,
    config: SimConfig | None = None,
    seed: int = 0,
    name: str | None = None,
) -> SimResult:
    """Replay ``trace`` through one node scaled by ``policy``.

    Args:
        trace: The load.
        policy: ``"ours"`` (:func:`~autoscale.policy.decide` with ``settings``) or
            ``"ray_default"`` (:func:`ray_default_policy` with ``ray_config``).
        settings: Our policy's settings (default: :func:`default_settings`).
        ray_config: Ray's config (default: :class:`RayDefaultConfig` with the same bounds as
            ``settings``; for ``"ray_tuned"``: :func:`tuned_ray_config`).
        config: The simulated node and loop.
        seed: Seeds arrivals and service times (the same for both policies).
        name: Trace name in the result (default: the trace's kind).

    Returns:
        The run's figures and time series.
    """
    cfg = config or SimConfig()
    settings = settings or default_settings(cfg)
    if ray_config is not None:
        ray_cfg = ray_config
    elif policy == "ray_tuned":
        ray_cfg = tuned_ray_config(settings)
    else:
        ray_cfg = RayDefaultConfig(
            min_replicas=settings.min_replicas, max_replicas=settings.max_replicas
        )
    rng = np.random.default_rng(seed)
    arrivals = sample_arrivals(trace, cfg.duration_s, rng)
    service = _service_times(arrivals.size, cfg, rng)
    node = SimulatedNode(arrivals, service, cfg.startup_s, cfg.slots)
    node.scale_to(cfg.initial_replicas, -cfg.startup_s)  # warm at t=0
    ray_metrics = RayMetricPipeline(ray_cfg)
    state: dict[str, Any] = {}

    period = cfg.decision_period_s
    ticks = round(cfg.duration_s / period)
    held = np.empty(ticks)
    changes: list[tuple[float, int]] = []
    for k in range(ticks):
        now = (k + 1) * period
        node.serve_until(now)
        cur = node.replicas
        if policy == "ours":
            desired, state = decide(
                settings, node.metrics(now, cfg.metrics_window_s, cfg.rate_window_s), state, now
            )
        elif policy in ("ray_default", "ray_tuned"):
            total = ray_metrics.total_num_requests(node, now)
            desired, state = ray_default_policy(ray_cfg, total, node.running(now), cur, state, now)
        else:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        held[k] = cur
        if desired != cur:
            changes.append((now, desired - cur))
            node.scale_to(desired, now)
    node.serve_until(math.inf)
    return _report(trace, policy, name or trace.kind, cfg, node, held, changes)


def _report(
    trace: LoadTrace,
    policy: str,
    name: str,
    cfg: SimConfig,
    node: SimulatedNode,
    held: np.ndarray,
    changes: list[tuple[float, int]],
) -> SimResult:
    w = cfg.report_window_s
    n = round(cfg.duration_s / w)
    edges = np.arange(n + 1) * w
    fin, lat = node.finish, (node.finish - node.arr) * 1000
    order = np.argsort(fin, kind="stable")
    fin, lat = fin[order], lat[order]
    cuts = np.searchsorted(fin, edges, side="right")
    outstanding = np.searchsorted(node.arr, edges[1:], side="right") - cuts[1:]
    p95 = np.full(n, np.nan)
    met = 0
    for i in range(n):
        window = lat[cuts[i] : cuts[i + 1]]
        if window.size:
            p95[i] = np.percentile(window, 95)
            met += int(p95[i] <= cfg.slo_p95_ms)
        else:
            met += int(outstanding[i] == 0)
    per_window = max(1, round(w / cfg.decision_period_s))
    replicas = held[per_window - 1 :: per_window][:n]
    ups = [t for t, d in changes if d > 0 and t >= trace.start_s]
    directions = [1 if d > 0 else -1 for _, d in changes]
    return SimResult(
        trace=name,
        policy=policy,
        slo_attainment=float(100.0 * met / n),
        replica_seconds=float(held.sum() * cfg.decision_period_s),
        time_to_first_scale_up_s=(ups[0] - trace.start_s) if ups else None,
        reversals=sum(a != b for a, b in itertools.pairwise(directions)),
        t=edges[:-1],
        rate=trace.rate(edges[:-1] + w / 2),
        replicas=replicas,
        p95_ms=p95,
    )


def tuned_ray_config(settings: ScalingSettings) -> RayDefaultConfig:
    """Ray Serve's default policy as a careful user tunes it: metrics every 0.5 s over 2 s,
    a 3 s upscale delay, the downscale delay and load target matched to ``settings``."""
    return RayDefaultConfig(
        target_ongoing_requests=settings.target_queue_per_replica,
        upscale_delay_s=3.0,
        downscale_delay_s=settings.downscale_cooldown_s,
        metrics_interval_s=0.5,
        look_back_period_s=2.0,
        min_replicas=settings.min_replicas,
        max_replicas=settings.max_replicas,
    )


def default_settings(config: SimConfig | None = None) -> ScalingSettings:
    """Our policy's settings in the comparison, as in the live run: the report's SLO, 1 to 16
    replicas, no step limit below that (Ray's policies have none), 2 s between scale-ups."""
    cfg = config or SimConfig()
    return ScalingSettings(
        slo_p95_ms=cfg.slo_p95_ms,
        min_replicas=1,
        max_replicas=16,
        max_step=16,
        upscale_cooldown_s=2.0,
    )


def compare(
    traces: Mapping[str, LoadTrace] | None = None,
    *,
    settings: ScalingSettings | None = None,
    config: SimConfig | None = None,
    seed: int = 0,
) -> list[SimResult]:
    """Every policy on every trace (default: :func:`standard_traces`), same seed for all."""
    cfg = config or SimConfig()
    traces = traces if traces is not None else standard_traces(cfg.duration_s)
    return [
        simulate(trace, policy, settings=settings, config=cfg, seed=seed, name=name)
        for name, trace in traces.items()
        for policy in POLICIES
    ]
