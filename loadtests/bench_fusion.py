"""Node fusion: the digits graph unfused, by default and fully fused, against a FastAPI peer.

One worker process and private Ray cluster (``graphs.cluster.start``, token auth) with
``graphs.cluster.RECOMMENDED_ENV``, as ``python -m graphs.cluster start`` sets it, serves
``graphs.builder.build_app`` of ``graphs/examples/digits.yaml`` one configuration after the
other (each deleted before the next), its Serve config's ``deployments:`` folded into the graph:

(b) ``fusion: none``, configs/digits.yaml's deployments: a deployment per node;
(c) ``fusion: cheap``, configs/digits.yaml: the default placement (scaler, router and ensemble
    in the ingress, each model in a deployment of its own);
(d) ``fusion: all``, configs/digits-fused.yaml: everything in the ingress, 2 ingress replicas.

(a) the peer (``peer_fastapi.py``: the plain FastAPI service a user would write instead), the
worker's subprocess on a free port of 127.0.0.1, is measured alone before the cluster starts,
then in alternating rounds with each graph (peer G, G peer, ...): a graph's ratios are against
the peer measured interleaved with it. Answers are checked first (served_by, placement from
``GET /graph``, the same probabilities from graph and peer for every arm). ``--ray-defaults``
adds two clusters on Ray Serve's defaults: (a) to (d) as plain ``serve run`` of the configs
gives (with the replica switches that servegraph adds to each deployment's runtime_env), and
the same cluster without them. Targets (p50 at c=1, rps at c=16): fusion all/peer p50 <= 2.0
and rps >= 0.8; default (cheap)/unfused (none) p50 <= 0.5.

    python loadtests/bench_fusion.py [--seconds 2] [--rounds 3] [--warmup 1] [--ray-defaults]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import _harness as h
import numpy as np
import peer_fastapi
from _bench_fusion.configs import CONFIGS, DEPLOYMENTS, NUM_CPUS, PEER
from _bench_fusion.report import ratios, render

#: Keys of a Serve config's deployment entry that fold into graph options of the same name.
FOLDED = ("num_replicas", "max_ongoing_requests", "max_queued_requests", "autoscaling_config")
ACTOR_FOLDED = ("num_cpus", "num_gpus")
ANSWERS = 120  # answers checked per target: every arm (p >= 0.25) shows up; with 2 replicas
# each router draws the same seeded sequence, whose first 20 draws never pick logreg (0.25)
RESERVED_PORTS = (range(31100, 31200), range(41100, 41200))  # the harness's direct ingress
# --- worker: one cluster configuration ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((h.HOST, 0))
        port = int(s.getsockname()[1])
    return free_port() if any(port in r for r in RESERVED_PORTS) else port


@contextlib.contextmanager
def peer_server(log_name: str) -> Iterator[str]:
    """``peer_fastapi.py`` on a free port of 127.0.0.1 for the block; its predict URL."""
    cmd = [sys.executable, os.path.join(h.HERE, "peer_fastapi.py"), "--port", str(free_port())]
    with open(os.path.join(h.private_dir(), log_name), "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, cwd=h.REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield f"http://{h.HOST}:{cmd[-1]}{peer_fastapi.PREFIX}/predict"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def answers(url: str, body: Any) -> dict[str, list[Any]]:
    """Arm -> probabilities over ``ANSWERS`` answers, each checked; every arm must show up."""
    import httpx

    seen: dict[str, list[Any]] = {}
    with httpx.Client(timeout=30) as client:
        for _ in range(ANSWERS):
            reply = client.post(url, json=body).json()
            served = reply.get("served_by") or []
            arm = served[2] if len(served) > 2 else "?"  # scale, split, then the arm
            outputs = reply.get("outputs") or {}
            probs: list[Any] = outputs.get("probabilities") or []
            ok = served == peer_fastapi.SERVED_BY.get(arm) and len(probs) == 1
            if not ok or outputs.get("label") != [int(np.argmax(probs))]:
                raise RuntimeError(f"unexpected answer from {url}: {reply}")
            seen[arm] = probs
    if set(seen) != set(peer_fastapi.SERVED_BY):
        raise RuntimeError(f"{url}: arms {sorted(seen)} in {ANSWERS} answers")
    return seen


def inspect_graph(app: str, target: str, args: dict[str, Any]) -> dict[str, Any]:
    """Where each node ran (``GET /graph``) and the running replicas; both checked."""
    import httpx
    from ray import serve

    view = httpx.get(f"{h.BASE_URL}/{app}/graph", timeout=30).json()
    replicas = {}
    for name, d in serve.status().applications[app].deployments.items():
        replicas[name] = h.replica_counts(d).get("RUNNING", 0)
    ingress = args["graph"].get("ingress", {}).get("num_replicas", 1)
    if set(view["deployments"]) != DEPLOYMENTS[target] or replicas.get("ingress") != ingress:
        raise RuntimeError(f"{app}: deployments {replicas}, /graph {view['deployments']}")
    return {"replicas": replicas, "nodes": {n["name"]: n["deployment"] for n in view["nodes"]}}


def measure(urls: dict[str, str], spec: dict[str, Any], tag: str) -> dict[str, Any]:
    conc = spec["concurrency"]
    h.warm_up(urls, spec["body"], conc, spec["warmup"])
    return h.alternating_rounds(urls, spec["body"], conc, spec["rounds"], spec["seconds"], tag=tag)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """The peer alone, then the cluster: the graph configurations one after the other, each
    measured in alternating rounds with the peer."""
    from graphs.cluster import REPLICA_ENV_KEYS
    from routing.state import STATE_DIR_ENV

    os.environ[STATE_DIR_ENV] = os.path.join(h.private_dir(), "state")  # fresh router state
    if spec["plain_build"]:
        # Built where the replica switches are unset, as `serve run` on a plain `ray start`
        # cluster builds: the compiler adds them to every deployment's runtime_env.
        for key in REPLICA_ENV_KEYS:
            os.environ.pop(key, None)
    body = spec["body"]
    out: dict[str, Any] = {"blocks": {}, "graphs": {}}
    if spec["peer_alone"]:
        with peer_server("peer_alone.log") as url:
            h.wait_ready(url, body, timeout_s=60)
            out["peer_alone"] = measure({PEER: url}, spec, "bench_fusion peer alone")[PEER]
    with h.ray_cluster(num_cpus=NUM_CPUS), peer_server("peer.log") as peer_url:
        from ray import serve

        from graphs.builder import build_app

        h.wait_ready(peer_url, body, timeout_s=60)
        peer_answers = answers(peer_url, body)
        for target, args in spec["apps"].items():
            app, t0 = f"fz_{target}", time.perf_counter()
            serve.run(build_app(args), name=app, route_prefix=f"/{app}")
            url = f"{h.BASE_URL}/{app}/predict"
            h.wait_ready(url, body, timeout_s=120)
            out["graphs"][target] = {"deploy_s": round(time.perf_counter() - t0, 1)}
            out["graphs"][target].update(inspect_graph(app, target, args))
            for arm, probs in answers(url, body).items():
                if not np.allclose(probs, peer_answers[arm], atol=1e-5):
                    raise RuntimeError(f"{app} {arm}: {probs} but the peer {peer_answers[arm]}")
            urls = {PEER: peer_url, target: url}
            out["blocks"][target] = measure(urls, spec, f"bench_fusion {target}")
            serve.delete(app)
        out["machine"] = h.machine_info()
    return out


# --- parent: configurations, ratios, report -----------------------------------------------------


def app_args(target: str) -> dict[str, Any]:
    """``build_app`` args of a configuration: its Serve config's args, the graph inline with the
    config's ``deployments:`` folded in (ingress options under ``ingress:``), its fusion."""
    import yaml

    config_file, fusion, _ = CONFIGS[target]
    with open(os.path.join(h.REPO, config_file), encoding="utf-8") as f:
        (app,) = yaml.safe_load(f)["applications"]
    graph_file = os.path.join(h.REPO, app["args"]["graph"])
    with open(graph_file, encoding="utf-8") as f:
        graph = yaml.safe_load(f)
    nodes = {n["name"]: n for n in graph["nodes"]}
    for entry in app.get("deployments", []):
        actor = entry.get("ray_actor_options") or {}
        extra = set(entry) - {"name", "ray_actor_options", *FOLDED}
        unknown = extra | (set(actor) - set(ACTOR_FOLDED))
        if unknown:
            raise RuntimeError(f"{config_file}: cannot fold {sorted(unknown)} of {entry['name']}")
        opts = {k: v for k, v in entry.items() if k in FOLDED}
        opts.update(actor)
        name = entry["name"]
        (graph.setdefault("ingress", {}) if name == "ingress" else nodes[name]).update(opts)
    base = os.path.dirname(graph_file)
    return {**app["args"], "graph": graph, "base_dir": base, "fusion": fusion}


def check_peer_is_the_graph() -> None:
    """The peer's split is the graph file's: same arms, weights and seed."""
    import yaml

    with open(os.path.join(h.REPO, "graphs", "examples", "digits.yaml"), encoding="utf-8") as f:
        split = next(n for n in yaml.safe_load(f)["nodes"] if n["name"] == "split")
    arms = tuple((a["target"], a["weight"]) for a in split["arms"])
    if arms != peer_fastapi.ARMS or split.get("seed") != peer_fastapi.SEED:
        raise RuntimeError(f"peer_fastapi.ARMS/SEED differ from the graph's split: {split}")


def run_config(
    args: argparse.Namespace,
    tag: str,
    targets: list[str],
    switches: dict[str, str],
    body: Any,
    plain_build: bool = False,
) -> dict[str, Any]:
    spec = {
        "apps": {t: app_args(t) for t in targets},
        "body": body,
        "peer_alone": tag == "recommended",
        "plain_build": plain_build,
        **{k: getattr(args, k) for k in ("seconds", "rounds", "warmup", "concurrency")},
    }
    block = args.rounds * 2 * len(args.concurrency) * (args.seconds + 2) + 4 * args.warmup
    raw = h.run_worker(
        os.path.abspath(__file__),
        spec,
        switches,
        tag=tag,
        timeout_s=120 + (len(targets) + 1) * (block + 90),
        keep_logs=args.keep_logs,
    )
    raw["summary"] = {t: h.summarize_targets(b) for t, b in raw["blocks"].items()}
    cs = map(str, args.concurrency)
    raw["peer"] = {
        c: h.summarize([r for b in raw["blocks"].values() for r in b[PEER][c]]) for c in cs
    }
    if "peer_alone" in raw:
        raw["peer_alone"] = {c: h.summarize(rs) for c, rs in raw["peer_alone"].items()}
    raw.update(name=tag, switches=switches, apps=spec["apps"])
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    h.add_timing(parser, per="target", seconds=2.0, rounds=3, warmup=1.0)
    h.add_concurrencies(parser, [1, 16])
    parser.add_argument(
        "--ray-defaults",
        action="store_true",
        help="also measure every configuration on two clusters with Ray Serve's defaults, with "
        "and without the replica switches servegraph adds (~7 min more)",
    )
    h.add_keep_logs(parser)
    args = h.parse(parser, argv, worker)
    if args is None:
        return 0

    from graphs.cluster import RECOMMENDED_ENV
    from graphs.examples.digits import ensure_trained

    check_peer_is_the_graph()
    test = np.load(os.path.join(ensure_trained(), "test.npz"))["x"][:1]
    body = {"inputs": {"input": test.astype(float).tolist()}}
    runs = [run_config(args, "recommended", list(CONFIGS), dict(RECOMMENDED_ENV), body)]
    if args.ray_defaults:
        runs.append(run_config(args, "ray_defaults", list(CONFIGS), {}, body, plain_build=True))
        runs.append(run_config(args, "ray_defaults_bare", list(CONFIGS), {}, body))
    lat, tp = str(min(args.concurrency)), str(max(args.concurrency))
    checks = [c for run in runs for c in ratios(run, lat, tp)]
    result = {
        "benchmark": "bench_fusion",
        **{k: getattr(args, k) for k in ("seconds", "rounds", "warmup", "concurrency")},
        "checks": checks,
        "summary": {r["name"]: {"peer": r["peer"], **r["summary"]} for r in runs},
        "machine": {r["name"]: r["machine"] for r in runs},
        "all_pass": all(c["verdict"] != "FAIL" for c in checks if c["cluster"] == "recommended"),
    }
    markdown = render(args, runs, checks)
    data = {**result, "raw": {r["name"]: r for r in runs}}
    if args.ray_defaults:  # kept apart too, so a later run without the flag does not replace it
        h.write_report("bench_fusion_ray_defaults", markdown, data, args.reports_dir)
    h.emit("bench_fusion", markdown, data, result, args.reports_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
