"""Per-node and feedback metrics on Ray's Prometheus endpoint (``ray.serve.metrics``).

Every node records the same figures whether it runs in a deployment of its own or fused into
its caller's (:class:`graphs.replica.NodeCore` holds one :class:`NodeMetrics` in both cases),
labelled ``graph`` and ``node``; Ray Serve adds ``deployment`` (the deployment the node runs
in), ``replica`` and ``application``. Nothing is labelled per user or per request. Ray prefixes
every name with ``ray_`` on the endpoint (``ray_servegraph_node_requests_total``).

A metric that cannot be recorded never fails a request: outside a Ray process the metrics
record nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nodes.errors import DeadlineExceededError, GraphError, OverloadedError, QuorumError
from nodes.gauges import keep_gauge

__all__ = [
    "LATENCY_BOUNDARIES_MS",
    "OUTCOMES",
    "FeedbackMetrics",
    "NodeMetrics",
    "feedback_reason",
    "outcome_of",
    "queued_in",
]

log = logging.getLogger(__name__)

#: How a node's call ended, the ``outcome`` label of ``servegraph_node_requests``.
OUTCOMES = ("ok", "client_error", "error", "timeout", "shed")
#: Latency buckets (ms), up to the two minutes an LLM generation may take.
LATENCY_BOUNDARIES_MS = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000, 120000,
]  # fmt: skip
#: Batch sizes (requests per batch).
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
#: Generation speed (tokens per second).
TOKENS_PER_S_BOUNDARIES = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
#: ``POST /<graph>/feedback`` refusals by HTTP status.
FEEDBACK_REASONS = {400: "malformed", 401: "forged", 409: "replayed", 410: "expired"}


def outcome_of(exc: BaseException | None) -> str:
    """The outcome of a call that raised ``exc`` (None: it succeeded).

    A deadline (or an ensemble's quorum timing out) is ``timeout``; a full queue, an open
    breaker, admission refusing or any other 503 (refused unserved, to retry later) is
    ``shed``; another 4xx error, or the caller going away (cancelled, nginx's 499), is
    ``client_error``; anything else is ``error``.
    """
    if exc is None:
        return "ok"
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "client_error"
    if isinstance(exc, DeadlineExceededError | QuorumError):
        return "timeout"
    if isinstance(exc, OverloadedError):
        return "shed"
    status = exc.status_code if isinstance(exc, GraphError) else 500
    if status == 503:
        return "shed"
    if 400 <= status < 500:
        return "client_error"
    return "error"


def feedback_reason(exc: BaseException) -> str:
    """Why ``POST /<graph>/feedback`` refused a reward: ``forged``, ``expired``, ``replayed``,
    ``malformed``, ``unavailable`` (the state holder restarting) or ``error``."""
    status = getattr(exc, "status_code", 500)
    if status == 503:
        return "unavailable"
    return FEEDBACK_REASONS.get(status, "error")


def queued_in(impl: Any) -> int:
    """Calls waiting inside a node's implementation: a batched model's next batch."""
    batcher = getattr(impl, "batcher", None)
    return int(batcher.waiting) if batcher is not None else 0


def _metrics() -> Any:
    from ray.serve import metrics

    return metrics


class NodeMetrics:
    """One node's metrics in the replica it runs in.

    ``servegraph_node_requests{graph, node, outcome}`` (counter),
    ``servegraph_node_latency_ms{graph, node}`` (histogram, to 120 s),
    ``servegraph_node_in_flight`` and ``servegraph_node_queue_length`` (gauges),
    ``servegraph_node_batch_size`` (histogram, batched model nodes),
    ``servegraph_llm_time_to_first_token_ms`` and ``servegraph_llm_tokens_per_second``
    (histograms, LLM nodes).

    Args:
        graph: the graph's name.
        node: the node's name.
    """

    def __init__(self, graph: str, node: str):
        self.graph, self.node = graph, node
        self._tags = {"graph": graph, "node": node}
        self.in_flight = 0
        self._ok = False
        try:
            self._create()
            self._ok = True
        except Exception as exc:  # a replica serves without its metrics rather than not at all
            log.warning("node %s: metrics unavailable (%r)", node, exc)

    def _create(self) -> None:
        metrics = _metrics()
        keys: Any = ("graph", "node")
        self._requests = metrics.Counter(
            "servegraph_node_requests",
            description="Calls of a node by outcome: ok, client_error, error, timeout, shed.",
            tag_keys=(*keys, "outcome"),
        )
        self._latency = metrics.Histogram(
            "servegraph_node_latency_ms",
            description="Latency of a node's calls (ms), its streams to the last item.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=keys,
        )
        self._in_flight = metrics.Gauge(
            "servegraph_node_in_flight",
            description="Calls inside a node in this replica now.",
            tag_keys=keys,
        )
        self._queue = metrics.Gauge(
            "servegraph_node_queue_length",
            description="Calls inside a node waiting for its model (a batched model's next "
            "batch); 0 for nodes that queue nothing themselves.",
            tag_keys=keys,
        )
        self._batch = metrics.Histogram(
            "servegraph_node_batch_size",
            description="Requests per batch of a batched model node.",
            boundaries=BATCH_BOUNDARIES,
            tag_keys=keys,
        )
        self._ttft = metrics.Histogram(
            "servegraph_llm_time_to_first_token_ms",
            description="Time from a streamed LLM call's start to its first token (ms).",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=keys,
        )
        self._tokens = metrics.Histogram(
            "servegraph_llm_tokens_per_second",
            description="Generated tokens per second of an LLM call, from its first token.",
            boundaries=TOKENS_PER_S_BOUNDARIES,
            tag_keys=keys,
        )
        every = (self._requests, self._latency, self._in_flight, self._queue, self._batch)
        for metric in (*every, self._ttft, self._tokens):
            # A dict each: Ray Serve adds its own tags to the one it is given.
            metric.set_default_tags({"graph": self.graph, "node": self.node})

    def _record(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        if not self._ok:
            return
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # a metric must never fail the call it measures
            log.debug("node %s: %s not recorded (%r)", self.node, what, exc)

    def started(self, queued: int = 0) -> None:
        """A call entered the node."""
        self.in_flight += 1
        self._record("in_flight", keep_gauge, self._in_flight, self.in_flight, self._tags)
        self._record("queue", keep_gauge, self._queue, queued, self._tags)

    def finished(self, outcome: str, seconds: float, queued: int = 0) -> None:
        """A call left the node with ``outcome`` after ``seconds``; ``queued``: calls still
        waiting inside the node."""
        self.in_flight -= 1
        self._record("requests", self._requests.inc, tags={"outcome": outcome})
        self._record("latency", self._latency.observe, seconds * 1000.0)
        self._record("in_flight", keep_gauge, self._in_flight, self.in_flight, self._tags)
        self._record("queue", keep_gauge, self._queue, queued, self._tags)

    def refused(self, outcome: str) -> None:
        """A call was refused before it started (its deadline had passed)."""
        self._record("requests", self._requests.inc, tags={"outcome": outcome})

    def batch(self, size: int) -> None:
        """A batch of ``size`` requests went to the model."""
        self._record("batch", self._batch.observe, size)

    def generation(self, first_token_s: float | None, tokens: int, seconds: float) -> None:
        """An LLM call ended: ``first_token_s`` after its start (streamed calls; None
        otherwise), ``tokens`` generated over ``seconds`` since the first one (or the start)."""
        if first_token_s is not None:
            self._record("ttft", self._ttft.observe, first_token_s * 1000.0)
        if tokens > 0 and seconds > 0:
            self._record("tokens", self._tokens.observe, tokens / seconds)


class FeedbackMetrics:
    """``servegraph_feedback{graph, outcome, reason}``: rewards ``POST /<graph>/feedback``
    accepted (reason ``applied``) or refused, and why (:func:`feedback_reason`)."""

    def __init__(self, graph: str):
        self.graph = graph
        self._counter: Any = None
        try:
            keys: Any = ("graph", "outcome", "reason")
            self._counter = _metrics().Counter(
                "servegraph_feedback",
                description="Rewards sent to POST /<graph>/feedback: accepted, or refused by "
                "reason (forged, expired, replayed, malformed, unavailable, error).",
                tag_keys=keys,
            )
        except Exception as exc:
            log.warning("graph %s: feedback metric unavailable (%r)", graph, exc)

    def accepted(self) -> None:
        """A reward was applied."""
        self._inc("accepted", "applied")

    def refused(self, exc: BaseException) -> None:
        """A reward was refused with ``exc``."""
        self._inc("refused", feedback_reason(exc))

    def _inc(self, outcome: str, reason: str) -> None:
        if self._counter is None:
            return
        try:
            self._counter.inc(tags={"graph": self.graph, "outcome": outcome, "reason": reason})
        except Exception as exc:
            log.debug("graph %s: feedback metric not recorded (%r)", self.graph, exc)
