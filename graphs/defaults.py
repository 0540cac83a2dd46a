"""Backpressure defaults by node kind: how many requests a replica works on at once, how many
wait in each caller's queue, and how many one ingress replica lets in.

Every figure applies only where the spec leaves the setting unset: the user's settings, and a
Serve config's ``deployments:`` overrides, win.
"""

from __future__ import annotations

from graphs.spec import DeploymentOptions, ModelNode, PreprocessNode

__all__ = [
    "MODEL_MAX_ONGOING",
    "ORCHESTRATION_MAX_ONGOING",
    "PREPROCESS_MAX_ONGOING",
    "QUEUE_FACTOR",
    "default_max_in_flight",
    "default_max_ongoing",
    "default_max_queued",
    "max_ongoing",
]

#: Ingress, routers and ensembles only await other nodes: many requests at once cost little, and
#: Ray Serve's default of 5 would cap every node below them (and their batches) at 5.
ORCHESTRATION_MAX_ONGOING = 256
PREPROCESS_MAX_ONGOING = 64
#: Models run in worker threads; a replica that accepts fewer requests than its callers send
#: makes Ray's routers back off (up to 0.5 s) and idle (measured: 14 rps at c=32 with 5, 42 at c=5).
MODEL_MAX_ONGOING = 32
#: Each caller (a proxy, an ingress or node replica) queues up to this many rounds of a
#: deployment's max_ongoing_requests: a burst of two rounds is absorbed while replicas drain it
#: (or the autoscaler adds some), and what waits stays bounded (Ray Serve's default, -1, queues
#: without limit: memory grows with the backlog until the process dies). Past it Serve refuses at
#: once: a JSON 503 with Retry-After inside the graph (BackPressureError), at the proxy Serve's
#: own 503.
QUEUE_FACTOR = 2


def default_max_ongoing(opts: DeploymentOptions) -> int:
    """``max_ongoing_requests`` when the spec leaves it unset, by node kind."""
    if isinstance(opts, ModelNode):
        # serve.batch can only fill a batch with requests the replica accepts at once.
        batch = opts.batching.max_batch_size if opts.batching else 0
        return max(MODEL_MAX_ONGOING, 2 * batch)
    if isinstance(opts, PreprocessNode):
        return PREPROCESS_MAX_ONGOING
    return ORCHESTRATION_MAX_ONGOING


def max_ongoing(opts: DeploymentOptions) -> int:
    """A node's ``max_ongoing_requests``: its own, else :func:`default_max_ongoing`."""
    return opts.max_ongoing_requests or default_max_ongoing(opts)


def default_max_in_flight(max_ongoing: int) -> int:
    """Requests one ingress replica works on when ``limits.max_in_flight`` is unset: 3/4 of its
    ``max_ongoing_requests``. Serve never sends a replica more than max_ongoing_requests, so the
    cap must sit below it for the excess to reach the replica and get a quick JSON 503 (rather
    than wait in the proxy's queue)."""
    return max(1, (3 * max_ongoing) // 4)


def default_max_queued(max_ongoing: int) -> int:
    """``max_queued_requests`` when the spec leaves it unset: :data:`QUEUE_FACTOR` rounds of
    ``max_ongoing``, and never fewer than one ingress replica lets in by default, so a request
    the ingress admitted waits in a queue instead of bouncing off a small node's with a 503
    halfway through the graph (models: 192 each caller, preprocess 192, routers and ensembles
    and the ingress's proxy queue 512)."""
    return max(QUEUE_FACTOR * max_ongoing, default_max_in_flight(ORCHESTRATION_MAX_ONGOING))
