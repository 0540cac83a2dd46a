"""Admission control at the ingress without Ray: the ASGI layer answers 429/503 with
Retry-After and a JSON body before the inner app runs, exempts health and metadata, and counts
every request out however it ends; plus the backpressure defaults of the compiler."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from graphs.admission import Admission, AdmissionGate, admission_for
from graphs.compiler import deployment_options
from graphs.defaults import default_max_queued
from graphs.middleware import ErrorBoundary, RequestGate
from graphs.spec import DeploymentOptions, GraphSpec, ModelNode, PreprocessNode
from routing.hs256 import issue_hs256
from routing.quota_ledger import QuotaLedger

KEY = b"s" * 32
JSON = {"content-type": "application/json"}


def graph(limits: dict[str, Any] | None = None, **kwargs: Any) -> GraphSpec:
    return GraphSpec.model_validate(
        {
            "name": "g",
            "inputs": [{"name": "x"}],
            "nodes": [{"kind": "preprocess", "name": "p", "function": "m:f"}],
            "entry": "p",
            "limits": limits or {},
            **kwargs,
        }
    )


TENANTS = {
    "tenant": {"header": "X-Tenant"},
    "default": {"requests_per_s": 1, "burst": 2},
    "tenants": {"gold": {"requests_per_s": 100, "max_concurrent": 1}},
}


class Inner:
    """The app behind the gate: records calls; ``hold`` keeps requests in progress."""

    def __init__(self) -> None:
        self.calls = 0
        self.hold: asyncio.Event | None = None
        self.fail = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        if self.hold is not None:
            await self.hold.wait()
        if self.fail:
            raise RuntimeError("boom")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"ok": true}'})


class Counter:
    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    def inc(self, tags: dict[str, str]) -> None:
        self.seen.append(tags)


def stack(admission: Admission, inner: Any) -> Any:
    return ErrorBoundary(AdmissionGate(RequestGate(inner, 1000), admission))


async def send(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, **kwargs)


def call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return asyncio.run(send(app, method, path, **kwargs))


def test_over_the_in_flight_cap_is_503_with_retry_after_before_the_inner_app_runs() -> None:
    admission = Admission(graph({"max_in_flight": 2, "retry_after_s": 3}))
    inner = Inner()
    admission.in_flight = 2  # two requests in progress
    r = call(stack(admission, inner), "POST", "/predict", content=b"{}", headers=JSON)
    assert r.status_code == 503 and r.headers["retry-after"] == "3"
    assert r.json()["error"] == "OverloadedError" and "max_in_flight=2" in r.json()["detail"]
    assert inner.calls == 0
    oip = call(stack(admission, inner), "POST", "/v2/models/g/infer", content=b"{}", headers=JSON)
    assert oip.status_code == 503 and set(oip.json()) == {"error"}


def test_the_default_cap_is_three_quarters_of_the_ingress_max_ongoing() -> None:
    assert Admission(graph()).max_in_flight == 192
    assert Admission(graph(), max_ongoing=8).max_in_flight == 6
    assert admission_for(graph(ingress={"max_ongoing_requests": 40})).max_in_flight == 30


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/health/ready"),
        ("GET", "/graph"),
        ("HEAD", "/v2/models/g"),
        ("OPTIONS", "/predict"),
        ("POST", "/routers/split/pause"),
    ],
)
def test_health_metadata_and_control_are_exempt(method: str, path: str) -> None:
    admission = Admission(graph({"max_in_flight": 1}))
    admission.in_flight = 1
    inner = Inner()
    r = call(stack(admission, inner), method, path, headers=JSON)
    assert r.status_code == 200 and inner.calls == 1


def test_a_tenant_over_its_rate_gets_429_naming_its_limit() -> None:
    counter = Counter()
    admission = Admission(graph(TENANTS), metrics=counter)
    inner = Inner()
    app = stack(admission, inner)
    headers = {**JSON, "X-Tenant": "acme-secret-name"}
    codes = [call(app, "POST", "/predict", content=b"{}", headers=headers) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    refused = codes[-1]
    assert refused.headers["retry-after"] == "1" and inner.calls == 2
    body = refused.json()
    assert body["error"] == "RateLimitedError" and body["reason"] == "rate"
    assert body["limit"] == {"requests_per_s": 1.0, "burst": 2} and body["tenant"] is None
    assert "acme-secret-name" not in refused.text
    # Another tenant has its own budget.
    other = call(app, "POST", "/predict", content=b"{}", headers={**JSON, "X-Tenant": "b"})
    assert other.status_code == 200
    labels = {(t["tenant"], t["outcome"]) for t in counter.seen}
    assert labels == {("other", "admitted"), ("other", "rate_limited")}
    assert {t["graph"] for t in counter.seen} == {"g"}


def test_openai_routes_are_refused_in_openais_error_shape() -> None:
    admission = Admission(graph(TENANTS), metrics=Counter())
    app = stack(admission, Inner())
    headers = {**JSON, "X-Tenant": "acme"}
    codes = [
        call(app, "POST", "/v1/chat/completions", content=b"{}", headers=headers) for _ in range(3)
    ]
    refused = codes[-1]
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert "1.0 requests/s" in error["message"]


def test_over_max_concurrent_is_429_and_the_slot_comes_back_on_success() -> None:
    admission = Admission(graph(TENANTS), metrics=Counter())
    inner = Inner()
    app = stack(admission, inner)
    headers = {**JSON, "X-Tenant": "gold"}

    async def go() -> list[int]:
        inner.hold = asyncio.Event()
        first = asyncio.create_task(send(app, "POST", "/predict", content=b"{}", headers=headers))
        while admission.in_flight == 0:
            await asyncio.sleep(0)
        second = await send(app, "POST", "/predict", content=b"{}", headers=headers)
        inner.hold.set()
        done = await first
        third = await send(app, "POST", "/predict", content=b"{}", headers=headers)
        return [done.status_code, second.status_code, third.status_code]

    assert asyncio.run(go()) == [200, 429, 200]
    assert admission.in_flight == 0
    assert admission.counts["gold"]["concurrency_limited"] == 1
    assert admission.counts["gold"]["admitted"] == 2


def test_slots_come_back_when_the_inner_app_fails() -> None:
    admission = Admission(graph(TENANTS), metrics=Counter())
    inner = Inner()
    inner.fail = True
    app = stack(admission, inner)
    r = call(app, "POST", "/predict", content=b"{}", headers={**JSON, "X-Tenant": "gold"})
    assert r.status_code == 500 and "boom" not in r.text
    assert admission.in_flight == 0
    assert admission.quotas is not None and admission.quotas._tenants["gold"].in_flight == 0


def test_slots_come_back_when_the_client_goes_away() -> None:
    admission = Admission(graph(TENANTS), metrics=Counter())
    inner = Inner()
    inner.hold = asyncio.Event()
    gate = AdmissionGate(inner, admission)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "headers": [(b"x-tenant", b"gold")],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def sink(message: Any) -> None:
        pass

    async def go() -> None:
        task = asyncio.create_task(gate(scope, receive, sink))
        while admission.in_flight == 0:
            await asyncio.sleep(0)
        task.cancel()  # what Serve does when the client disconnects
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert admission.in_flight == 0
    assert admission.quotas is not None and admission.quotas._tenants["gold"].in_flight == 0


def test_a_request_refused_by_the_cap_gives_its_tenant_token_back() -> None:
    admission = Admission(graph({**TENANTS, "max_in_flight": 1}), metrics=Counter())
    admission.in_flight = 1
    app = stack(admission, Inner())
    headers = {**JSON, "X-Tenant": "acme"}
    for _ in range(4):  # burst 2: refused by the cap, never by the rate
        assert call(app, "POST", "/predict", content=b"{}", headers=headers).status_code == 503
    assert admission.counts["other"]["overloaded"] == 4


def test_jwt_tenants_401_with_www_authenticate_and_the_token_never_echoed() -> None:
    limits = {"tenant": {"jwt_claim": "sub"}, "tenants": {"acme": {"requests_per_s": 5}}}
    admission = Admission(graph(limits), key=KEY, wall=lambda: 1000.0, metrics=Counter())
    inner = Inner()
    app = stack(admission, inner)
    expired = issue_hs256({"sub": "acme", "exp": 10}, KEY)
    r = call(
        app,
        "POST",
        "/predict",
        content=b"{}",
        headers={**JSON, "authorization": f"Bearer {expired}"},
    )
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert "expired" in r.json()["detail"] and expired.split(".")[1] not in r.text
    good = issue_hs256({"sub": "acme", "exp": 2000}, KEY)
    ok = call(
        app, "POST", "/predict", content=b"{}", headers={**JSON, "authorization": f"Bearer {good}"}
    )
    assert ok.status_code == 200 and inner.calls == 1
    assert admission.counts["other"]["refused"] == 1 and admission.counts["acme"]["admitted"] == 1


def test_jwt_graphs_need_the_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = {"tenant": {"jwt_claim": "sub", "key_env": "ADMISSION_TEST_KEY"}}
    monkeypatch.delenv("ADMISSION_TEST_KEY", raising=False)
    with pytest.raises(ValueError, match="ADMISSION_TEST_KEY"):
        Admission(graph(limits))
    monkeypatch.setenv("ADMISSION_TEST_KEY", "k" * 32)
    assert Admission(graph(limits)).resolver is not None


def test_unlisted_tenants_are_403_under_reject_and_missing_headers_400() -> None:
    limits = {
        "tenant": {"header": "X-Tenant", "anonymous": None},
        "tenants": {"gold": {"requests_per_s": 5}},
        "unknown_tenant": "reject",
    }
    app = stack(Admission(graph(limits), metrics=Counter()), Inner())
    stranger = call(app, "POST", "/predict", content=b"{}", headers={**JSON, "X-Tenant": "x"})
    assert stranger.status_code == 403 and stranger.json()["error"] == "TenantRejectedError"
    missing = call(app, "POST", "/predict", content=b"{}", headers=JSON)
    assert missing.status_code == 400 and "X-Tenant" in missing.json()["detail"]


def test_the_shared_budget_is_used_once_a_ledger_answers() -> None:
    ledger = QuotaLedger(graph(TENANTS).limits, 0.0)

    def factory() -> Any:
        async def sync(report: dict[str, dict[str, int]]) -> dict[str, Any]:
            return ledger.sync("r1", report, 0.0)

        return sync

    admission = Admission(graph(TENANTS), ledger=factory, metrics=Counter(), clock=lambda: 0.0)
    app = stack(admission, Inner())
    r = call(app, "POST", "/predict", content=b"{}", headers={**JSON, "X-Tenant": "gold"})
    assert r.status_code == 200
    assert admission.quotas is not None and admission.quotas.mode == "shared"


def test_many_tenants_keep_memory_and_metric_labels_bounded() -> None:
    counter = Counter()
    admission = Admission(graph({**TENANTS, "max_tenants": 16}), metrics=counter)
    app = stack(admission, Inner())

    async def go() -> None:
        for i in range(300):
            headers = {**JSON, "X-Tenant": f"t{i}"}
            await send(app, "POST", "/predict", content=b"{}", headers=headers)

    asyncio.run(go())
    assert admission.quotas is not None and len(admission.quotas._tenants) <= 16
    assert {t["tenant"] for t in counter.seen} == {"other"}
    assert set(admission.counts) == {"other"}


def test_describe_shows_limits_and_live_figures_without_secrets() -> None:
    limits = {"tenant": {"jwt_claim": "sub", "key_env": "K"}, **{"tenants": TENANTS["tenants"]}}
    admission = Admission(graph(limits), key=KEY, metrics=Counter())
    view = admission.describe()
    assert view["max_in_flight"] == 192 and view["in_flight"] == 0
    assert view["tenant"] == {"jwt_claim": "sub", "key_env": "K", "algorithm": "HS256"}
    assert view["tenants"] == {"gold": {"requests_per_s": 100.0, "burst": 100, "max_concurrent": 1}}
    assert view["replica"]["mode"] == "starting"
    assert KEY.decode() not in json.dumps(view)
    assert Admission(graph()).describe()["tenant"] is None


def test_no_metric_without_ray() -> None:
    admission = Admission(graph())
    admission.count("other", "admitted")  # Ray is not initialised: counted here only
    assert admission.counts["other"]["admitted"] == 1


# --- backpressure defaults ---------------------------------------------------------------


def test_queues_are_bounded_by_default_per_node_kind() -> None:
    model = ModelNode(kind="model", name="m", runtime="python", model_class="m:C")
    pre = PreprocessNode(kind="preprocess", name="p", function="m:f")
    assert deployment_options(model)["max_queued_requests"] == 192
    assert deployment_options(pre)["max_queued_requests"] == 192
    assert deployment_options(DeploymentOptions())["max_queued_requests"] == 512
    assert default_max_queued(1000) == 2000


def test_the_users_queue_setting_wins() -> None:
    assert (
        deployment_options(DeploymentOptions(max_queued_requests=-1))["max_queued_requests"] == -1
    )
    assert deployment_options(DeploymentOptions(max_queued_requests=7))["max_queued_requests"] == 7
