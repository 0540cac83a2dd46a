"""Routers live: sticky A/B, canary, shadow and a Thompson bandit on the digits demo, with two
router replicas sharing one state actor; feedback tokens; killing a router replica and the state
actor loses nothing learned. Statistical bounds are stated next to each assertion."""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import ray
from ray import serve

from graphs import Graph, tensor
from graphs.builder import load_graph
from graphs.compiler import compile_graph
from graphs.examples.digits_replay import replay
from graphs.validate import PACKAGE_ROOT
from routing.ab import StickyAB
from routing.store import NAMESPACE, actor_name
from tests.integration import helpers
from tests.support import CONTROL_HEADERS, wait_app_running, wait_for

X = [tensor("x", "FP32", [-1, 1])]


def _flaky(g: Graph, name: str, fail_rate: float = 0.0, latency_s: float = 0.0) -> Any:
    return g.model(
        name,
        runtime="python",
        model_class=helpers.Flaky,
        init_kwargs={"name": name, "fail_rate": fail_rate, "latency_s": latency_s},
        num_cpus=0,
    )


async def _post_many(
    url: str, n: int, headers: Callable[[int], dict[str, str]] | None = None, concurrency: int = 8
) -> list[httpx.Response]:
    results: list[httpx.Response | None] = [None] * n
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    async with httpx.AsyncClient(timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                results[i] = await client.post(
                    f"{url}/predict",
                    json={"inputs": {"x": [[float(i)]]}},
                    headers=headers(i) if headers else None,
                )

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [r for r in results if r is not None]


def _router_state(http: httpx.Client, url: str) -> dict[str, Any]:
    """The live state of the graph's router ``split`` from ``GET /graph``."""
    nodes = http.get(f"{url}/graph").json()["nodes"]
    return dict(next(n["state"] for n in nodes if n["name"] == "split"))


def _arms(responses: list[httpx.Response]) -> list[str]:
    return [r.json()["served_by"][1] for r in responses]


def _deploy_together(deploy: Callable[..., str], apps: dict[str, Any]) -> dict[str, str]:
    """Submit every app, then wait for each: their replicas start together."""
    urls = {name: deploy(app, name, wait=False) for name, app in apps.items()}
    for name in apps:
        wait_app_running(name)
    return urls


def _ab_graph(state_dir: str, user_config_weights: list[float]) -> Graph:
    g = Graph("ab", inputs=X)
    a, b = _flaky(g, "a"), _flaky(g, "b")
    g.entry = g.router(
        "split",
        [(a, 0.7), (b, 0.3)],
        num_replicas=2,
        ab={"key": {"header": "X-User-Id"}, "salt": "exp-1"},
        user_config={"weights": user_config_weights},
        state={"dir": state_dir},
    )
    return g


def test_sticky_ab_split_stickiness_and_runtime_weights(
    state_dir: str, deploy: Callable[..., str], http: httpx.Client
) -> None:
    g = _ab_graph(state_dir, [0.7, 0.3])
    url = deploy(g.build(), "ab")
    users = 400

    def user(i: int) -> dict[str, str]:
        return {"X-User-Id": f"user-{i % users}"}

    def expected(weights: list[float]) -> list[str]:  # the rendezvous hash of routing.ab
        split = StickyAB(weights, arm_ids=["a", "b"], salt="exp-1")
        return [["a", "b"][split.arm_for_key(f"user-{i}")] for i in range(users)]

    # Every user gets the arm its key hashes to, whichever of the 2 replicas answers.
    first = _arms(asyncio.run(_post_many(url, users, user)))
    assert first == expected([0.7, 0.3])
    share = first.count("a") / users
    assert abs(share - 0.7) <= 0.092  # 400 users: sd 0.023, the bound is 4 sd

    r = http.post(f"{url}/routers/split/weights", json={"weights": [0.6, 0.4]})
    assert r.status_code == 401, r.text  # closed without the control token
    r = http.post(
        f"{url}/routers/split/weights", json={"weights": [0.6, 0.4]}, headers=CONTROL_HEADERS
    )
    assert r.status_code == 200, r.text
    assert r.json()["weights"] == pytest.approx([0.6, 0.4])

    def settled() -> list[str] | None:  # both replicas have synced the new weights
        arms = _arms(asyncio.run(_post_many(url, users, user)))
        return arms if arms == expected([0.6, 0.4]) else None

    after = wait_for(settled, 30, "both replicas on the new weights")
    moved = [(x, y) for x, y in zip(first, after) if x != y]
    assert len(moved) / users <= 0.10 + 0.06  # ideal 10 %; 4 sd (0.015) of tolerance
    assert all(y == "b" for _, y in moved)  # keys only move to the arm that grew

    # Serve user_config: redeploying with new weights reconfigures the replicas in place.
    g2 = _ab_graph(state_dir, [0.0, 1.0])
    serve.run(g2.build(), name="ab", route_prefix="/ab")
    wait_for(lambda: set(_arms(asyncio.run(_post_many(url, 40, user)))) == {"b"}, 30, "user_config")
    state = _router_state(http, url)
    assert state["weights"] == [0.0, 1.0] and state["sticky_key"] == {"header": "X-User-Id"}


def _canary_graph(name: str, state_dir: str, fail_rate: float) -> Graph:
    g = Graph(name, inputs=X)
    # Both arms take 20 ms, so the p95 gate compares that floor, not a few milliseconds of
    # scheduling noise on a loaded machine (which could roll a healthy candidate back).
    stable = _flaky(g, f"{name}-stable", latency_s=0.02)
    candidate = _flaky(g, f"{name}-cand", fail_rate, latency_s=0.02)
    g.entry = g.router(
        "split",
        [stable, candidate],
        num_replicas=2,
        canary={
            "steps": [20, 50, 100],
            "min_step_seconds": 1,
            "min_candidate_requests": 40,
            "min_stable_requests": 40,
            "gates": {"max_error_rate_delta": 0.1, "max_p95_ratio": 5},
        },
        state={"dir": state_dir},
    )
    return g


def _drive_canary(url: str, http: httpx.Client) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        asyncio.run(_post_many(url, 100))
        canary = _router_state(http, url)["canary"]
        return canary if canary["status"] in ("promoted", "rolled_back") else None

    return dict(wait_for(finished, 120, "the canary to finish"))


def test_canary_rolls_back_a_failing_candidate_and_promotes_a_healthy_one(
    state_dir: str, deploy: Callable[..., str], http: httpx.Client
) -> None:
    urls = _deploy_together(
        deploy,
        {
            "canbad": _canary_graph("canbad", state_dir, 0.3).build(),
            "cangood": _canary_graph("cangood", state_dir, 0.0).build(),
        },
    )
    bad, good = urls["canbad"], urls["cangood"]

    canary = _drive_canary(bad, http)
    assert canary["status"] == "rolled_back"
    last = canary["history"][-1]
    assert last["action"] == "rollback" and last["automatic"]
    assert "error rate" in last["reason"]
    cand = last["figures"]["candidate"]
    assert cand["requests"] >= 40 and cand["errors"] > 0
    # The figures kept show the breach the gate saw: the candidate's error rate (30 % injected)
    # more than 0.1 above the stable arm's, which injects none.
    (breach,) = [b for b in last["figures"]["breaches"] if b["gate"] == "max_error_rate_delta"]
    assert breach["observed"] > 0.1 and breach["observed"] <= cand["error_rate"]
    # After the rollback every request goes to the stable arm.
    wait_for(
        lambda: (
            {r.json()["served_by"][1] for r in asyncio.run(_post_many(bad, 40))}
            == {"canbad-stable"}
        ),
        30,
        "all traffic back on stable",
    )

    canary = _drive_canary(good, http)
    assert canary["status"] == "promoted"
    assert [e["action"] for e in canary["history"]] == ["start", "advance", "advance", "promote"]
    r = http.post(
        f"{good}/routers/split/rollback", json={"reason": "pager went off"}, headers=CONTROL_HEADERS
    )
    assert r.status_code == 200 and r.json()["event"]["reason"] == "pager went off"
    r = http.post(f"{good}/routers/split/pause", json={}, headers=CONTROL_HEADERS)
    assert r.status_code == 409 and "rolled_back" in r.json()["detail"]


def test_shadow_failures_and_hangs_never_reach_the_client(
    state_dir: str, deploy: Callable[..., str], http: httpx.Client
) -> None:
    g = Graph("shadowed", inputs=X)
    primary = _flaky(g, "primary")
    hang = g.model("hang", runtime="python", model_class=helpers.Hang, num_cpus=0)
    g.entry = g.router(
        "split",
        [primary],
        num_replicas=2,
        shadow={"target": hang, "max_in_flight": 4, "timeout_s": 1},
        state={"dir": state_dir},
    )
    g2 = Graph("shadowbroken", inputs=X)
    primary2 = _flaky(g2, "primary")
    broken = g2.model("broken", runtime="python", model_class=helpers.Broken, num_cpus=0)
    g2.entry = g2.router("split", [primary2], shadow={"target": broken}, state={"dir": state_dir})
    # One after the other: the hanging shadow's calls (5 s each) drain while the second runs.
    for graph, name in ((g, "shadowed"), (g2, "shadowbroken")):
        url = deploy(graph.build(), name)
        responses = asyncio.run(_post_many(url, 60))
        assert [r.status_code for r in responses] == [200] * 60
        assert {r.json()["outputs"]["arm"][0] for r in responses} == {"primary"}

        def figures(url: str = url) -> dict[str, Any] | None:
            shadow = http.get(f"{url}/experiments").json()["routers"]["split"]["shadow"]
            settled = shadow["mirrored"] == 60 and (
                shadow["dropped"] + shadow["timeouts"] + shadow["shadow_errors"] == 60
            )
            return dict(shadow) if settled else None

        shadow = wait_for(figures, 30, f"{name}'s shadow figures")
        if name == "shadowed":  # 2 replicas x 4 slots hang until their 1 s timeout
            assert shadow["timeouts"] >= 4 and shadow["dropped"] >= 1
        else:
            # every mirrored call failed or (under load, past 16 in flight) was dropped
            assert shadow["compared"] == 0 and shadow["shadow_errors"] >= 40


def _digits_bandit(state_dir: str) -> Any:
    path = os.path.join(PACKAGE_ROOT, "graphs", "examples", "digits_bandit.yaml")
    spec = load_graph(path)
    nodes = [
        n.model_copy(
            update={"num_replicas": 2, "state": n.state.model_copy(update={"dir": state_dir})}
        )
        if n.name == "split"
        else n
        for n in spec.nodes
    ]
    return compile_graph(spec.model_copy(update={"nodes": nodes, "name": "bandit"}))


def test_thompson_bandit_learns_the_better_digits_model_and_survives_restarts(
    state_dir: str, deploy: Callable[..., str], http: httpx.Client
) -> None:
    url = deploy(_digits_bandit(state_dir), "bandit")
    result = asyncio.run(replay(url, requests=1200, feedback=True, concurrency=8, seed=0))
    assert result["statuses"] == {200: 1200}
    assert result["feedback_statuses"] == {200: 1200}
    last = result["last_500_by_arm"]
    # The MLP is right 97 % of the time, the weak model 78 %: Thompson sampling should have
    # all but stopped exploring the weak arm (expected pulls ~ ln(1200)/KL = 55 in total).
    assert last.get("mlp", 0) >= 0.9 * 500, last
    report = result["experiments"]["routers"]["split"]
    assert report["arms"]["mlp"]["vs_control"]["significant"]

    def bandit_counts() -> list[float]:
        return list(_router_state(http, url)["bandit"]["counts"])

    learned = bandit_counts()
    assert sum(learned) == 1200

    # Kill one router replica: Serve replaces it, the new one resumes from the shared state.
    replica = next(
        a
        for a in ray.util.state.list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
        if a.class_name.startswith("ServeReplica:bandit:split")
    )
    ray.kill(ray.get_actor(replica.name, namespace="serve"), no_restart=True)
    # Kill the state actor: Ray restarts it, it reloads its snapshot and replays its log.
    holder = ray.get_actor(actor_name("bandit", "split"), namespace=NAMESPACE)
    ray.kill(holder, no_restart=False)

    def replicas_running() -> bool:
        app = serve.status().applications["bandit"]
        return (
            app.status == "RUNNING" and app.deployments["split"].replica_states.get("RUNNING") == 2
        )

    wait_for(replicas_running, 60, "the router replica to be replaced")
    assert wait_for(bandit_counts, 60, "the state actor to answer") == learned

    # The restarted router keeps exploiting what was learned.
    more = asyncio.run(replay(url, requests=200, feedback=True, concurrency=4, seed=1))
    assert more["served_by_arm"].get("mlp", 0) >= 0.9 * 200
    assert sum(bandit_counts()) == 1400


def test_feedback_tokens_forged_expired_replayed_or_malformed_change_nothing(
    state_dir: str, deploy: Callable[..., str], http: httpx.Client
) -> None:
    g = Graph("fb", inputs=X, feedback_ttl_s=2)
    a, b = _flaky(g, "a"), _flaky(g, "b")
    g.entry = g.router("split", [a, b], bandit={}, state={"dir": state_dir})
    url = deploy(g.build(), "fb")
    # The router has no deployment options of its own: it runs fused in the ingress, where
    # /feedback reaches it in place.
    split = next(n for n in http.get(f"{url}/graph").json()["nodes"] if n["name"] == "split")
    assert split["deployment"] == "ingress"

    def predict() -> str:
        r = http.post(f"{url}/predict", json={"inputs": {"x": [[1.0]]}})
        assert r.status_code == 200, r.text
        assert r.headers["x-feedback-token"] == r.json()["feedback_token"]
        return str(r.json()["feedback_token"])

    def counts() -> list[float]:
        return list(_router_state(http, url)["bandit"]["counts"])

    token = predict()
    version, claims, signature = token.split(".")
    forged_claims = claims[:-2] + ("AA" if claims[-2:] != "AA" else "BB")
    cases = {
        "forged": (f"{version}.{forged_claims}.{signature}", 1.0, 401),
        "malformed": ("not-a-token", 1.0, 400),
        "bad reward": (token, 7.0, 422),  # thompson_beta takes rewards in [0, 1]
    }
    for case, (tok, reward, status) in cases.items():
        r = http.post(f"{url}/feedback", json={"token": tok, "reward": reward})
        assert r.status_code == status, (case, r.text)
    r = http.post(f"{url}/feedback", json={"token": token})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "reward"]
    assert counts() == [0.0, 0.0]

    assert http.post(f"{url}/feedback", json={"token": token, "reward": 1}).status_code == 200
    r = http.post(f"{url}/feedback", json={"token": token, "reward": 1})
    assert r.status_code == 409, r.text
    assert sum(counts()) == 1

    old = predict()
    wait_for(lambda: _after_expiry(http, url, old), 30, "the token to expire")
    assert sum(counts()) == 1


def _after_expiry(http: httpx.Client, url: str, token: str) -> bool:
    """True once the token's ttl has passed: the feedback endpoint answers 410 (posting before
    expiry would consume the token, so this reads its expiry from the claims instead)."""
    import base64
    import json
    import time

    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    if time.time() < claims["exp"]:
        return False
    r = http.post(f"{url}/feedback", json={"token": token, "reward": 1})
    assert r.status_code == 410, r.text
    return True


def test_experiment_report_counts_requests_errors_and_rewards(
    state_dir: str, deploy: Callable[..., str], http: httpx.Client
) -> None:
    g = Graph("report", inputs=X)
    a, b = _flaky(g, "ra"), _flaky(g, "rb", fail_rate=0.5)
    g.entry = g.router("split", [(a, 0.5), (b, 0.5)], seed=1, state={"dir": state_dir})
    url = deploy(g.build(), "report")
    # An earlier run's replicas leave their series on the endpoint a while: count from here.
    before = {outcome: _rb_requests(outcome) for outcome in ("ok", "error")}
    responses = asyncio.run(_post_many(url, 200))
    for r in responses:
        if r.status_code == 200:
            reward = 1.0 if r.json()["served_by"][1] == "ra" else 0.0
            http.post(
                f"{url}/feedback", json={"token": r.json()["feedback_token"], "reward": reward}
            )
    arms = http.get(f"{url}/experiments").json()["routers"]["split"]["arms"]
    assert arms["ra"]["requests"] + arms["rb"]["requests"] == 200
    assert arms["ra"]["errors"] == 0 and 0.3 <= arms["rb"]["error_rate"] <= 0.7
    assert arms["ra"]["p95_ms"] is not None and arms["ra"]["reward"]["mean"] == 1.0
    codes = collections.Counter(r.status_code for r in responses)
    assert codes[500] == arms["rb"]["errors"]
    test = arms["rb"]["vs_control"]
    assert test["test"] == "two_proportion_z" and test["significant"]

    # The same figures reach Ray's Prometheus endpoint as per-arm metrics.
    def exported(outcome: str) -> float:
        return _rb_requests(outcome) - before[outcome]

    wait_for(
        lambda: exported("ok") + exported("error") == arms["rb"]["requests"],
        120,
        "per-arm metrics on Ray's Prometheus endpoint",
    )
    assert exported("error") == arms["rb"]["errors"]


def _rb_requests(outcome: str) -> float:
    return _metric(
        "ray_servegraph_router_requests_total", application="report", arm="rb", outcome=outcome
    )


def _metric(name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` with ``labels`` on this node's Ray metrics endpoint."""
    from prometheus_client.parser import text_string_to_metric_families

    port = ray.nodes()[0]["MetricsExportPort"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


# --- feedback that cannot be poisoned -------------------------------------------------------


def _predict_token(http: httpx.Client, url: str, x: float = 1.0) -> str:
    r = http.post(f"{url}/predict", json={"inputs": {"x": [[x]]}})
    assert r.status_code == 200, r.text
    return str(r.json()["feedback_token"])


def test_huge_rewards_are_refused_and_the_router_keeps_serving_after_restarts(
    state_dir: str, deploy: Callable[..., str], http: httpx.Client
) -> None:
    g = Graph("poison", inputs=X)
    a, b = _flaky(g, "a"), _flaky(g, "b")
    bandit = {"algorithm": "thompson_gaussian"}
    g.entry = g.router("split", [a, b], bandit=bandit, state={"dir": state_dir})
    url = deploy(g.build(), "poison")
    good = http.post(f"{url}/feedback", json={"token": _predict_token(http, url), "reward": 0.5})
    assert good.status_code == 200, good.text
    before = _router_state(http, url)["bandit"]
    for reward in (1e308, -1e308, 1e308):
        r = http.post(
            f"{url}/feedback", json={"token": _predict_token(http, url), "reward": reward}
        )
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", "reward"]
    assert _router_state(http, url)["bandit"] == before
    holder = ray.get_actor(actor_name("poison", "split"), namespace=NAMESPACE)
    ray.kill(holder, no_restart=False)  # Ray restarts it from its snapshot and log
    for _ in range(20):
        _predict_token(http, url)
    assert (
        wait_for(lambda: _router_state(http, url)["bandit"], 60, "state")["counts"]
        == (before["counts"])
    )


def test_out_of_range_contextual_features_are_422(
    state_dir: str, deploy: Callable[..., str], http: httpx.Client
) -> None:
    g = Graph("ctx", inputs=[tensor("x", "FP64", [-1, 1])])
    a, b = _flaky(g, "a"), _flaky(g, "b")
    pre = g.preprocess(helpers.with_feature, name="feature")
    bandit = {"algorithm": "linucb", "features": ["f"]}
    g.entry = pre >> g.router("split", [a, b], bandit=bandit, state={"dir": state_dir})
    url = deploy(g.build(), "ctx")
    r = http.post(f"{url}/predict", json={"inputs": {"x": [[1e200]]}})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "inputs", "f"]
    token = _predict_token(http, url, 2.0)
    assert http.post(f"{url}/feedback", json={"token": token, "reward": 1.0}).status_code == 200
    assert http.post(f"{url}/predict", json={"inputs": {"x": [[3.0]]}}).status_code == 200


def test_a_token_of_one_graph_is_refused_by_another_sharing_its_key(
    state_dir: str, deploy: Callable[..., str], http: httpx.Client
) -> None:
    from routing.keys import state_dir as shared_state

    apps = {}
    for name in ("ga", "gb"):
        folder = os.path.join(shared_state(), name)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "feedback.key"), "w") as f:
            f.write("one-key-for-both-graphs-0123456789")
        g = Graph(name, inputs=X)
        a, b = _flaky(g, "a"), _flaky(g, "b")
        g.entry = g.router("split", [a, b], bandit={}, state={"dir": state_dir})
        apps[name] = g.build()
    urls = _deploy_together(deploy, apps)
    token = _predict_token(http, urls["ga"])
    r = http.post(f"{urls['gb']}/feedback", json={"token": token, "reward": 1.0})
    assert r.status_code == 401 and "issued for graph 'ga'" in r.json()["detail"]
    r = http.post(f"{urls['ga']}/feedback", json={"token": token, "reward": 1.0})
    assert r.status_code == 200, r.text
