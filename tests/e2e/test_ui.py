"""The live graph page in a real browser (Debian's Chromium, driven by Playwright): while load
runs it shows the figures changing, a weights change asks for confirmation and the control token
and takes effect on the page and in ``/graph``; a 30-node graph lays out without overlaps.
The test saves the page's screenshot as ``loadtests/reports/ui.png`` (README "Operate")."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from graphs.builder import build_app
from graphs.compiler import compile_graph
from graphs.examples.digits import ensure_trained
from graphs.examples.passthrough import spec as chain_spec
from tests.session import CONTROL_TOKEN
from tests.support import (
    CONTROL_HEADERS,
    ROOT,
    apps_running,
    ensure_serve,
    wait_for,
)

SCREENSHOT = os.path.join(ROOT, "loadtests", "reports", "ui.png")
APP = "ui-digits"  # a graph name of its own: router state is kept per graph and router


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("the browser test needs Debian's chromium: apt-get install -y chromium")
    return found


@pytest.fixture(scope="module")
def graphs(ray_cluster: None) -> Iterator[dict[str, str]]:
    """The digits A/B graph (70/30) and a chain of 30 pass-through nodes, served together."""
    ensure_serve()
    ensure_trained()
    with open(os.path.join(ROOT, "graphs", "examples", "digits_ab.yaml")) as f:
        digits = {**yaml.safe_load(f), "name": APP}
    base = os.path.join(ROOT, "graphs", "examples")
    apps = {
        APP: build_app({"graph": digits, "base_dir": base}),
        "ui-chain": compile_graph(chain_spec(30, name="ui-chain")),
    }
    with apps_running(apps) as urls:
        yield urls


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def load(graphs: dict[str, str]) -> Iterator[dict[str, int]]:
    """Light load on the digits graph from a background thread (many users: both arms)."""
    images = np.load(os.path.join(ROOT, "artifacts", "digits", "test.npz"))["x"]
    stop = threading.Event()
    sent = {"ok": 0, "failed": 0}

    def run() -> None:
        with httpx.Client(timeout=30) as client:
            i = 0
            while not stop.is_set():
                reply = client.post(
                    f"{graphs[APP]}/predict",
                    json={"inputs": {"input": images[i % len(images)][None].tolist()}},
                    headers={"X-User-Id": f"user-{i}"},
                )
                sent["ok" if reply.status_code == 200 else "failed"] += 1
                i += 1
                stop.wait(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield sent
    stop.set()
    thread.join(timeout=30)


def _updated(page: Any) -> None:
    """Wait for the page's first refresh (polled from here: the page's Content Security Policy
    forbids the string evaluation Playwright's wait_for_function uses)."""
    count = "Number(document.body.dataset.updates || 0)"
    wait_for(lambda: page.evaluate(count) >= 1, 60, "the page's first refresh")


def _router_weights(url: str) -> list[float]:
    graph = httpx.get(f"{url}/graph", timeout=30).json()
    return next(n for n in graph["nodes"] if n["name"] == "split")["state"]["weights"]


def test_the_page_shows_live_figures_and_changes_weights_with_confirmation(
    graphs: dict[str, str], browser: Any, load: dict[str, int]
) -> None:
    url = graphs[APP]
    page = browser.new_page(viewport={"width": 1500, "height": 820})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{url}/ui")
    _updated(page)
    assert page.text_content("#graph-name") == APP
    assert page.locator("svg g.node").count() == 5  # the ingress and the graph's 4 nodes
    # Where each node runs: the scaler and the router fused into the ingress, models on their own.
    assert "fused in ingress" in (page.text_content('g[data-node="split"]') or "")
    assert "own deployment" in (page.text_content('g[data-node="mlp"]') or "")

    # The numbers move while load runs: the arms' request counts grow and rates show up.
    def requests_of(arm: str) -> int:
        return int(page.text_content(f'tr[data-arm="{arm}"] td.requests') or 0)

    first = requests_of("logreg")
    wait_for(lambda: requests_of("logreg") > first, 60, "the page's request count to grow")
    wait_for(
        lambda: float(page.get_attribute("body", "data-total-rps") or 0) > 0,
        60,
        "a request rate on the page",
    )
    assert "rps" in (page.text_content('g[data-node="logreg"]') or "")
    assert page.text_content('tr[data-arm="mlp"] td.weight') == "30 %"

    # A weights change asks first: cancelled, nothing is sent.
    page.fill('input[data-weight="logreg"]', "0.2")
    page.fill('input[data-weight="mlp"]', "0.8")
    page.click('button[data-action="weights"]')
    assert "weights router split" in (page.text_content("#confirm-text") or "")
    page.click("#confirm-no")
    page.wait_for_selector("#log li:has-text('cancelled')")
    assert _router_weights(url) == [0.7, 0.3]

    # Confirmed: the page asks for the control token, sends it, and the split changes.
    page.fill('input[data-weight="logreg"]', "0.2")
    page.fill('input[data-weight="mlp"]', "0.8")
    page.click('button[data-action="weights"]')
    page.click("#confirm-yes")
    page.fill("#token-input", CONTROL_TOKEN)
    page.click("#token-ok")
    page.wait_for_selector("#log li.ok:has-text('done: weights')")
    assert _router_weights(url) == [0.2, 0.8]
    wait_for(lambda: page.text_content('tr[data-arm="mlp"] td.weight') == "80 %", 30, "80 % shown")
    assert "ab 20 / 80" in (page.text_content('g[data-node="split"]') or "")
    # The token is sent, never shown: not in the page, not left in the token field.
    assert CONTROL_TOKEN not in page.content()
    assert page.input_value("#token-input") == ""

    # Traffic follows the new split: mlp's share of new requests rises past its old 30 %.
    before = {arm: requests_of(arm) for arm in ("logreg", "mlp")}

    def mlp_share_of_new() -> bool:
        new = {arm: requests_of(arm) - before[arm] for arm in before}
        return sum(new.values()) >= 40 and new["mlp"] / sum(new.values()) > 0.5

    wait_for(mlp_share_of_new, 90, "mlp to take most new requests")
    page.screenshot(path=SCREENSHOT)
    assert load["ok"] > 0 and load["failed"] == 0 and not errors
    reset = httpx.post(f"{url}/routers/split/reset", json={}, headers=CONTROL_HEADERS)
    assert reset.status_code == 200, reset.text


def test_a_wrong_token_is_refused_and_forgotten(graphs: dict[str, str], browser: Any) -> None:
    url = graphs[APP]
    page = browser.new_page()
    page.goto(f"{url}/ui")
    page.wait_for_selector('button[data-action="reset"]')
    page.click('button[data-action="reset"]')
    page.click("#confirm-yes")
    page.fill("#token-input", "not-the-token")
    page.click("#token-ok")
    page.wait_for_selector("#log li.error:has-text('HTTP 401')")
    assert page.evaluate("Object.keys(sessionStorage).length") == 0  # asks again next time


def test_a_30_node_graph_lays_out_without_overlaps(graphs: dict[str, str], browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{graphs['ui-chain']}/ui")
    _updated(page)
    boxes = page.evaluate(
        """[...document.querySelectorAll('svg g.node')].map((g) => {
             const r = g.getBoundingClientRect();
             return [g.dataset.node, r.left, r.top, r.right, r.bottom];
           })"""
    )
    assert len(boxes) == 31
    for i, (a, *ra) in enumerate(boxes):
        for b, *rb in boxes[i + 1 :]:
            apart = ra[2] <= rb[0] or rb[2] <= ra[0] or ra[3] <= rb[1] or rb[3] <= ra[1]
            assert apart, f"{a} overlaps {b}"
    assert page.locator("#nodes-table tbody tr").count() == 30
    # A node far down the chain is reachable from the table: selected, scrolled to, described.
    page.click('#nodes-table tr[data-node="hop29"]')
    page.wait_for_selector("#selected h2:has-text('Node hop29')")
    assert page.locator('g.node.selected[data-node="hop29"]').is_visible()
