"""The graphs the scenarios run, declared in code with the shipped example modules
(``graphs.examples.passthrough``, ``graphs.examples.faults``), so a clean clone runs them.

Every deployment reserves no CPU (``num_cpus: 0``): a dozen replicas schedule on 2 cores.
Input ``x`` (FP32, [-1]); every model returns its input.
"""

from __future__ import annotations

from typing import Any

BODY = {"inputs": {"x": [1.0]}}
X = [{"name": "x", "datatype": "FP32", "shape": [-1]}]
IDENTITY = "graphs.examples.passthrough:Identity"
IDENTITY_FN = "graphs.examples.passthrough:identity"
SWITCHABLE = "graphs.examples.faults:Switchable"
#: Breaker of the hang scenario's router arms: the product's defaults (failure_ratio 0.5 over
#: window_s 10 with min_calls 10, open_s 5, probes 3), as a user who writes ``breaker: {}`` gets.
BREAKER: dict[str, Any] = {}
#: The hang scenario's request deadline (s): the hung arm's requests end at it with a 504.
HANG_DEADLINE_S = 2.0
#: Router state settings of the state scenarios: snapshots often enough to matter in 30 s.
STATE = {"sync_interval_s": 0.5, "snapshot_interval_s": 2.0}


def _graph(name: str, **options: Any) -> Any:
    from graphs.dsl import Graph

    return Graph(name, inputs=X, outputs=X, **options)


def _model(g: Any, name: str, **options: Any) -> Any:
    return g.model(name, runtime="python", model_class=IDENTITY, num_cpus=0, **options)


def kinds(state_dir: str) -> Any:
    """Scenario 1: every node kind in a deployment of its own (``fusion: none``), 2 replicas
    each: ingress -> preprocess ``pre`` -> router ``split`` -> model ``a`` or ensemble ``ens``
    (members ``a``, ``b``)."""
    g = _graph("chaos_kinds", fusion="none", ingress={"num_cpus": 0})
    two = {"num_replicas": 2, "num_cpus": 0}
    pre = g.preprocess(IDENTITY_FN, name="pre", **two)
    a = _model(g, "a", num_replicas=2)
    b = _model(g, "b", num_replicas=2)
    ens = g.ensemble("ens", [a, b], **two)
    split = g.router("split", {a: 0.5, ens: 0.5}, seed=0, state={"dir": state_dir}, **two)
    g.entry = pre >> split
    return g.build()


#: Scenario 1's deployments by node kind (the one killed of each).
KIND_DEPLOYMENTS = {"preprocess": "pre", "router": "split", "model": "a", "ensemble": "ens"}


def ingress(replicas: int = 2) -> Any:
    """Scenario 2: two ingress replicas in front of one model node."""
    g = _graph("chaos_ingress", ingress={"num_cpus": 0, "num_replicas": replicas})
    g.entry = _model(g, "m", num_replicas=1)
    return g.build()


def bandit(name: str, router: str, state_dir: str) -> Any:
    """Scenarios 3, 6, 7: a Thompson-sampling router ``router`` (in the 2 ingress replicas)
    over two pass-through arms ``good`` and ``bad``; the client rewards ``good`` 1, ``bad`` 0.
    Each scenario names its router differently, so log lines tell them apart."""
    g = _graph(name, ingress={"num_cpus": 0, "num_replicas": 2})
    arms = [_model(g, "good"), _model(g, "bad")]
    g.entry = g.router(
        router,
        arms,
        bandit={"algorithm": "thompson_beta"},
        state={**STATE, "dir": state_dir},
    )
    return g.build()


def reward(answer: dict[str, Any]) -> float | None:
    """The bandit scenarios' reward: 1 for ``good``, 0 for ``bad``."""
    served = answer.get("served_by") or []
    return 1.0 if "good" in served else 0.0 if "bad" in served else None


def hang(control_path: str, state_dir: str) -> Any:
    """Scenario 5: router ``split`` over ``hangy`` and ``healthy`` (each a ``Switchable``,
    half the traffic each), ``fallback: healthy``, a breaker per arm, and a graph deadline of
    :data:`HANG_DEADLINE_S`. ``control_path`` switches ``hangy``; ``healthy`` never fails."""
    g = _graph("chaos_hang", timeout_s=HANG_DEADLINE_S, ingress={"num_cpus": 0})

    def switchable(name: str, control: str) -> Any:
        return g.model(
            name,
            runtime="python",
            model_class=SWITCHABLE,
            init_kwargs={"control_path": control, "tag": name},
            num_cpus=0,
        )

    hangy = switchable("hangy", control_path)
    healthy = switchable("healthy", control_path + ".healthy")
    g.entry = g.router(
        "split",
        {hangy: 0.5, healthy: 0.5},
        seed=0,
        fallback=healthy,
        breaker=BREAKER,
        state={"dir": state_dir},
    )
    return g.build()


def two_node_config(
    app: str, head_resource: str, slot_resource: str, *, pinned: bool = True
) -> dict[str, Any]:
    """Scenario 4, as a Serve config (what ``serve deploy`` takes): ingress -> model ``model``
    with 4 replicas. The config's ``deployments:`` pin the ingress to the head (a resource only
    the head has) and, when ``pinned``, give each model replica one ``slot_resource``, of which
    each node has 2: two replicas per node, and the head cannot take the worker's. Unpinned,
    Ray places the model's replicas as it likes (what a user gets who sets nothing)."""
    graph = {
        "name": app,
        "inputs": X,
        "outputs": X,
        "entry": "model",
        "ingress": {"num_cpus": 0},
        "nodes": [
            {
                "name": "model",
                "kind": "model",
                "runtime": "python",
                "model_class": IDENTITY,
                "num_cpus": 0,
                "num_replicas": 4,
            }
        ],
    }
    return {
        "applications": [
            {
                "name": app,
                "route_prefix": f"/{app}",
                "import_path": "graphs.builder:build_app",
                "args": {"graph": graph},
                "deployments": [
                    {
                        "name": "ingress",
                        "ray_actor_options": {"num_cpus": 0, "resources": {head_resource: 0.01}},
                    },
                    *(
                        [
                            {
                                "name": "model",
                                "ray_actor_options": {
                                    "num_cpus": 0,
                                    "resources": {slot_resource: 1},
                                },
                            }
                        ]
                        if pinned
                        else []
                    ),
                ],
            }
        ]
    }
