"""The HTTP ingress deployment of a graph.

Each replica builds its own FastAPI app (:func:`graphs.http_api.make_app`) over a
:class:`~graphs.runner.GraphRunner`, through Ray Serve's late-bound ingress
(``__serve_build_asgi_app__``): no module-global app is shared or mutated between graphs.
"""

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from ray import serve

from graphs.http_api import make_app
from graphs.runner import GraphRunner
from graphs.spec import INGRESS_NAME, GraphSpec


@serve.deployment(name=INGRESS_NAME)
@serve.ingress()
class GraphIngress:
    """One replica of a graph's HTTP ingress.

    Args:
        spec: the graph.
        handles: deployment handles of every node with a deployment of its own, by name (the
            nodes fused into the ingress run in its replicas).
    """

    def __init__(self, spec: GraphSpec, handles: Mapping[str, Any]):
        self.runner = GraphRunner(spec, handles)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return make_app(self.runner)

    async def hosted(self, node: str, method: str, *args: Any) -> Any:
        """Call ``method`` of ``node`` (e.g. ``stats``) through this replica: in place when the
        node is fused into the ingress, through its handle otherwise."""
        return await getattr(self.runner.handles[node], method).remote(*args)
