"""Hand-written Ray Serve baselines: an N-hop chain of pass-through deployments behind one ingress,
and a plain FastAPI app in one process; the yardstick for a graph framework's own overhead.

Vendored from ``shared/bench/handwritten.py``: unchanged in behaviour (same deployments, same
``num_cpus: 0``, same pass-through loop); reformatted, typed, its unused ``import sys`` dropped.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve.deployment import Application
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Hop:
    async def __call__(self, x: Any) -> Any:
        return x


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Ingress:
    def __init__(self, *hops: DeploymentHandle):
        self.hops = hops

    async def __call__(self, req: Request) -> Any:
        x = await req.json()
        for h in self.hops:
            x = await h.remote(x)
        return x


def chain(n: int) -> Application:
    return Ingress.bind(*[Hop.options(name=f"hop{i}").bind() for i in range(n)])
