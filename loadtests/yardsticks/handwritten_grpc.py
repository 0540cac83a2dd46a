"""Variant of handwritten.py whose handles use Ray Serve's gRPC transport (_by_reference=False).

Vendored from ``shared/bench/handwritten_grpc.py``: unchanged in behaviour (same deployments,
same ``handle.options(_by_reference=False)``); reformatted, typed, ``Hop`` imported from the
vendored ``handwritten`` next to it.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve.deployment import Application
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request

from .handwritten import Hop


@serve.deployment(ray_actor_options={"num_cpus": 0})
class IngressG:
    def __init__(self, *hops: DeploymentHandle):
        self.hops = [h.options(_by_reference=False) for h in hops]

    async def __call__(self, req: Request) -> Any:
        x = await req.json()
        for h in self.hops:
            x = await h.remote(x)
        return x


def chain(n: int) -> Application:
    return IngressG.bind(*[Hop.options(name=f"ghop{i}").bind() for i in range(n)])
