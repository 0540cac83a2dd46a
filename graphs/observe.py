"""A graph's ``observe:`` block at run time, in each ingress replica: :class:`Observer`.

The hot path (:meth:`Observer.record`) makes a sample decision and a ``put_nowait`` into a bounded
queue, nothing else. Background tasks on the replica's event loop bin the sampled inputs and
outputs into fixed-size rings (:mod:`nodes.drift`), compare them with the reference every
``every_s`` and write the inference log (:mod:`graphs.inference_log`). Rewards from
``/feedback`` are attributed to the arms their token names, for live quality per arm. Each ingress
replica reports its own sample.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from graphs.inference_log import EventLog, cloud_event, sampled, sink_for
from graphs.observe_metrics import DriftMetrics
from graphs.spec import INGRESS_NAME, GraphSpec, RouterNode, refs
from nodes.drift import Binning, Window, compare, load_reference, rows
from nodes.observe_spec import DriftSpec, LiveWindow
from nodes.tensors import to_json

__all__ = ["DriftMonitor", "Observer", "Quality"]

log = logging.getLogger(__name__)


class DriftMonitor:
    """Sampled inputs and outputs binned against a reference, compared on demand.

    Args:
        spec: the drift settings.
        names: the tensors watched (the graph's inputs, then its outputs).
        reference: the reference rows by tensor name; None to freeze a live window first.
    """

    def __init__(
        self,
        spec: DriftSpec,
        names: Sequence[str],
        reference: Mapping[str, np.ndarray] | None,
    ):
        self.spec = spec
        self.names = list(names)
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(spec.queue)
        self.dropped = 0
        self.unreadable = 0
        self.windows: dict[str, Window] = {}
        self._collected: dict[str, list[np.ndarray]] = {}
        self._collecting = 0
        if reference is not None:
            self._freeze(reference)
        self.last: dict[str, Any] = {"state": self.state}

    @property
    def state(self) -> str:
        """``collecting reference``, ``warming up`` (under min_samples) or ``comparing``."""
        if not self.windows:
            return "collecting reference"
        if min(w.filled for w in self.windows.values()) < self.spec.min_samples:
            return "warming up"
        return "comparing"

    def _freeze(self, reference: Mapping[str, np.ndarray]) -> None:
        self.windows = {
            name: Window(Binning(reference[name], self.spec.bins), self.spec.window)
            for name in self.names
            if name in reference and len(reference[name])
        }

    def offer(self, tensors: dict[str, Any]) -> None:
        """Hot path: queue a sampled request's tensors, or drop and count when full."""
        try:
            self.queue.put_nowait(tensors)
        except asyncio.QueueFull:
            self.dropped += 1

    def add(self, tensors: Mapping[str, Any]) -> None:
        """Bin one sampled request (or collect it into the live reference)."""
        try:
            matrices = {n: rows(tensors[n]) for n in self.names if n in tensors}
        except (TypeError, ValueError):  # not numbers: nothing to bin
            self.unreadable += 1
            return
        if not self.windows:
            assert isinstance(self.spec.reference, LiveWindow)
            for name, matrix in matrices.items():
                self._collected.setdefault(name, []).append(matrix)
            self._collecting += 1
            if self._collecting >= self.spec.reference.window:
                self._freeze({n: np.concatenate(m) for n, m in self._collected.items()})
                self._collected.clear()
            return
        for name, window in self.windows.items():
            if name in matrices and matrices[name].shape[1] == window.binning.features:
                window.add(matrices[name])

    def check(self) -> dict[str, Any]:
        """Compare every tensor's window with its reference: the report /graph shows."""
        report: dict[str, Any] = {
            "state": self.state,
            "checked_at": datetime.datetime.now(datetime.UTC).isoformat(),
            "dropped": self.dropped,
        }
        if self.state != "comparing":
            report["collected"] = self._collecting if not self.windows else None
            self.last = report
            return report
        thresholds = self.spec.thresholds.model_dump()
        top = None if self.spec.features == "all" else int(self.spec.features)
        tensors = {}
        for name, window in self.windows.items():
            binning = window.binning
            names = [f"{name}[{i}]" for i in range(binning.features)]
            tensors[name] = {
                "rows": window.filled,
                **compare(binning, window.counts(), thresholds, names, top),
            }
        drifted = sum(t["summary"]["drifted"] for t in tensors.values())
        report.update(
            flagged=drifted >= self.spec.min_drifted, drifted_features=drifted, tensors=tensors
        )
        self.last = report
        return report


class Quality:
    """Rewards from ``/feedback`` per router and arm: live accuracy when rewards are 1/0."""

    def __init__(self, spec: GraphSpec):
        self.arms = {
            n.name: [arm.label for arm in n.arms] for n in spec.nodes if isinstance(n, RouterNode)
        }
        self.members = {
            n.name: [(arm.label, set(refs(arm.target))) for arm in n.arms]
            for n in spec.nodes
            if isinstance(n, RouterNode)
        }
        self.totals: dict[tuple[str, str], list[float]] = {}

    def served_arms(self, served: Sequence[str]) -> dict[str, str]:
        """The arm each router chose, read off the nodes that served a request."""
        chosen = set(served)
        return {
            router: label
            for router, arms in self.members.items()
            for label, nodes in arms
            if router in chosen and nodes <= chosen
        }

    def reward(self, decisions: Sequence[tuple[str, int]], reward: float) -> dict[str, str]:
        """Count ``reward`` for each decision's arm; returns router -> arm label."""
        arms = {}
        for router, index in decisions:
            labels = self.arms.get(router, [])
            if 0 <= index < len(labels):
                arms[router] = labels[index]
                total = self.totals.setdefault((router, labels[index]), [0.0, 0.0])
                total[0] += 1
                total[1] += reward
        return arms

    def describe(self) -> dict[str, Any]:
        """Per router and arm: rewards received and their mean (live accuracy for 1/0)."""
        out: dict[str, Any] = {router: {} for router in self.arms}
        for (router, arm), (count, total) in sorted(self.totals.items()):
            out[router][arm] = {"rewards": int(count), "reward_mean": round(total / count, 6)}
        return out


def _replica_name() -> str:
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # outside a Serve replica
        return f"pid{os.getpid()}"


class Observer:
    """Drift, quality and the inference log of one ingress replica.

    Args:
        spec: the graph; its ``observe`` block must be set.
        replica: this replica's name (the JSONL file's); default: Serve's replica id.
        metrics: export ``servegraph_drift_*`` / ``servegraph_inference_log_*`` metrics (in a
            Ray process only).
    """

    def __init__(self, spec: GraphSpec, replica: str | None = None, metrics: bool = True):
        observe = spec.observe
        if observe is None:
            raise ValueError(f"graph {spec.name!r} has no observe block")
        self.graph = spec.name
        self.replica = replica or _replica_name()
        self.source = f"/{spec.name}/{INGRESS_NAME}"
        self.quality = Quality(spec)
        self.drift: DriftMonitor | None = None
        self.reference = ""
        if observe.drift is not None:
            names = [t.name for t in spec.inputs] + [t.name for t in spec.outputs]
            ref = observe.drift.reference
            data = None
            if isinstance(ref, str):
                data, self.reference = load_reference(ref, [t.name for t in spec.inputs]), ref
            else:
                self.reference = f"the first {ref.window} sampled requests"
            self.drift = DriftMonitor(observe.drift, names, data)
        self.log_spec = observe.log
        self.log: EventLog | None = None
        if observe.log is not None:
            sink = sink_for(observe.log, f"{spec.name}-{self.replica}")
            self.log = EventLog(sink, observe.log.queue, self._render)
        self._metrics = DriftMetrics(spec.name) if metrics else None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the background tasks on the running event loop (once)."""
        if self._tasks:
            return
        if self.drift is not None:
            self._tasks += [asyncio.create_task(self._bin()), asyncio.create_task(self._check())]
        if self.log is not None:
            self._tasks.append(asyncio.create_task(self.log.drain()))

    def record(
        self,
        request_id: str,
        inputs: Mapping[str, Any],
        outputs: Mapping[str, Any],
        served: Sequence[str],
        latency_s: float,
    ) -> None:
        """Hot path: sample the request for drift and the log; never waits, never raises."""
        try:
            if not self._tasks:
                self.start()
            if self.drift is not None and random.random() < self.drift.spec.sample_rate:
                self.drift.offer({**outputs, **inputs})
            if self.log is not None and self._logged(request_id):
                self.log.put(("pair", request_id, inputs, outputs, list(served), latency_s), 2)
        except Exception as exc:  # observing must never fail a request that succeeded
            log.warning("observe: request %s not sampled: %r", request_id, exc)

    def _logged(self, request_id: str) -> bool:
        return self.log_spec is not None and sampled(request_id, self.log_spec.sample_rate)

    def feedback(
        self, request_id: str, decisions: Sequence[tuple[str, int]], reward: float
    ) -> None:
        """A reward for ``request_id``: per-arm quality, and a feedback event when it is logged."""
        arms = self.quality.reward(decisions, reward)
        if self._metrics is not None:
            self._metrics.reward(arms, self.quality.describe())
        if self.log is not None and self._logged(request_id):
            if not self._tasks:
                self.start()
            self.log.put(("feedback", request_id, arms, reward))

    def _render(self, record: tuple[Any, ...]) -> list[dict[str, Any]]:
        """A queued record's CloudEvents (in the log's writer thread)."""
        extra = {"replica": self.replica}
        if record[0] == "feedback":
            _, request_id, arms, reward = record
            data = {"request_id": request_id, "reward": reward, "arms": arms}
            return [{**cloud_event("feedback", self.source, request_id, data), **extra}]
        _, request_id, inputs, outputs, served, latency_s = record
        payloads = self.log_spec is not None and self.log_spec.payloads
        request = {"request_id": request_id, **({"inputs": to_json(inputs)} if payloads else {})}
        response = {
            "request_id": request_id,
            **({"outputs": to_json(outputs)} if payloads else {}),
            "served_by": served,
            "arms": self.quality.served_arms(served),
            "latency_ms": round(latency_s * 1000, 3),
        }
        return [
            {**cloud_event("request", self.source, request_id, request), **extra},
            {**cloud_event("response", self.source, request_id, response), **extra},
        ]

    async def _bin(self) -> None:
        assert self.drift is not None
        while True:
            tensors = await self.drift.queue.get()
            try:
                self.drift.add(tensors)
            except Exception as exc:  # one odd request must not stop the sampler
                log.warning("drift: a sampled request could not be binned: %r", exc)

    async def _check(self) -> None:
        assert self.drift is not None
        while True:
            await asyncio.sleep(self.drift.spec.every_s)
            try:
                report = self.drift.check()
                if self._metrics is not None:
                    self._metrics.drift(report, self.drift.dropped)
                    if self.log is not None:
                        self._metrics.inference_log(self.log.describe())
            except Exception as exc:
                log.warning("drift: comparison failed: %r", exc)

    def report(self) -> dict[str, Any]:
        """What /graph shows under ``observe``: this replica's drift, quality and log figures."""
        if not self._tasks:
            self.start()
        out: dict[str, Any] = {"replica": self.replica, "quality": self.quality.describe()}
        if self.drift is not None:
            out["drift"] = {"reference": self.reference, **self.drift.last}
        if self.log is not None:
            out["log"] = self.log.describe()
            if self._metrics is not None:
                self._metrics.inference_log(out["log"])
        return out
