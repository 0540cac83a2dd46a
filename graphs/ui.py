"""The live graph page (``GET /<graph>/ui``) and the per-node figures it polls (``GET /live``).

The page is static HTML, JavaScript and CSS shipped in the package (``graphs/static/``): nothing
comes from a CDN and nothing is built. It draws the graph from ``/graph``, polls ``/live`` (per
node figures, replicas, the bottleneck), ``/graph`` (router state) and ``/experiments`` (per arm
figures with confidence intervals), and sends operator actions to
``/routers/<router>/<action>`` with the control token the user types in: the token stays in the
tab's ``sessionStorage`` and is sent only in the ``Authorization`` header. The page's Content
Security Policy lets it load scripts, styles and data from its own origin only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from graphs.live import ReplicaCounts, live_view
from graphs.runner import GraphRunner
from graphs.spec import INGRESS_NAME
from nodes.errors import ModelNotFoundError

__all__ = ["UI_DIR", "routes"]

#: Where the page's files are (package data).
UI_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
#: The page's files besides ``index.html``, with their media types.
ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}
#: Headers of every answer of the page: own-origin content only, no framing, no caching.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


def routes(runner: GraphRunner, admission: Any = None) -> APIRouter:
    """The page's routes for the graph ``runner`` serves; ``admission`` (the ingress's
    :class:`~graphs.admission.AdmissionGate` settings) adds its in-flight figures to ``/live``."""
    router = APIRouter()
    counts = ReplicaCounts()
    placement: Mapping[str, str] = runner.placement.host
    with open(os.path.join(UI_DIR, "index.html"), encoding="utf-8") as f:
        page = f.read()

    @router.get("/ui", include_in_schema=False)
    async def ui() -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    @router.get("/ui/{asset}", include_in_schema=False)
    async def ui_asset(asset: str) -> FileResponse:
        if asset not in ASSETS:
            raise ModelNotFoundError(f"no such file of the page: {asset!r}")
        return FileResponse(
            os.path.join(UI_DIR, asset), media_type=ASSETS[asset], headers=PAGE_HEADERS
        )

    @router.get("/live")
    async def live() -> dict[str, Any]:
        """Per node: the deployment it runs in, its replicas, requests/s, p50/p95 latency,
        errors/s, requests in flight and how busy its replicas are; per deployment, Serve's
        status and replica states; and the bottleneck (the busiest node)."""
        described = admission.describe() if admission is not None else None
        view = await live_view(runner.spec.name, placement, runner.handles, counts, described)
        view["ingress"] = view["deployments"].get(INGRESS_NAME, {})
        return view

    return router
