"""The KubeRay RayService manifest stays consistent with ``configs/`` and secure by default.

Reads ``configs/kuberay/digits-rayservice.yaml`` (a RayService and the PersistentVolumeClaim it
mounts) as plain YAML: no Ray, no Kubernetes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from graphs.cluster import RECOMMENDED_ENV
from tests.support import ROOT

MANIFEST = os.path.join(ROOT, "configs", "kuberay", "digits-rayservice.yaml")
#: Secrets the product and Ray read from the environment; never a literal in the manifest.
SECRET_ENV = ("SERVEGRAPH_CONTROL_TOKEN", "SERVEGRAPH_FEEDBACK_KEY", "RAY_AUTH_TOKEN")
OPTIONAL_SECRET_ENV = ("SERVEGRAPH_FEEDBACK_KEY_PREVIOUS",)
STATE_DIR_ENV = "SERVEGRAPH_STATE_DIR"
#: KubeRay reads the Ray token from this key of ``authOptions.secretName``.
KUBERAY_AUTH_TOKEN_KEY = "auth_token"
DASHBOARD_PORT = 8265
RAY_CLIENT_PORT = 10001

Container = dict[str, Any]
PodSpec = dict[str, Any]


def _documents() -> list[dict[str, Any]]:
    with open(MANIFEST) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def _one(kind: str) -> dict[str, Any]:
    found = [doc for doc in _documents() if doc.get("kind") == kind]
    assert len(found) == 1, f"{MANIFEST}: expected one {kind}, found {len(found)}"
    return found[0]


def _cluster() -> dict[str, Any]:
    return _one("RayService")["spec"]["rayClusterConfig"]


def _groups() -> Iterator[tuple[str, dict[str, Any]]]:
    cluster = _cluster()
    yield "head", cluster["headGroupSpec"]
    for group in cluster.get("workerGroupSpecs", []):
        yield group["groupName"], group


def _containers() -> Iterator[tuple[str, Container, PodSpec]]:
    for group_name, group in _groups():
        pod = group["template"]["spec"]
        for container in pod["containers"]:
            yield f"{group_name}/{container['name']}", container, pod


def _env(container: Container) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def test_kuberay_rayservice_serves_the_same_applications() -> None:
    service = _one("RayService")
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    with open(os.path.join(ROOT, "configs", "digits.yaml")) as f:
        assert serve_config["applications"] == yaml.safe_load(f)["applications"]
    # In the cluster the Serve port is the one that must be reachable from other pods.
    assert serve_config["http_options"]["host"] == "0.0.0.0"


def test_every_container_reads_its_secrets_from_the_secret() -> None:
    cluster = _cluster()
    auth = cluster.get("authOptions") or {}
    secret_name = auth.get("secretName")
    assert secret_name, "authOptions.secretName names the Secret the operator reads the token from"
    for where, container, _ in _containers():
        env = _env(container)
        for name in SECRET_ENV + OPTIONAL_SECRET_ENV:
            if name not in env and name in OPTIONAL_SECRET_ENV:
                continue
            assert name in env, f"{where}: {name} is not set"
            entry = env[name]
            assert "value" not in entry, f"{where}: {name} is a literal value"
            ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
            assert ref and ref.get("key"), f"{where}: {name} is not from a secretKeyRef"
            assert ref["name"] == secret_name, f"{where}: {name} reads Secret {ref['name']}"
            if name in OPTIONAL_SECRET_ENV:
                assert ref.get("optional") is True, f"{where}: {name} must be optional"
        token_ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert token_ref["key"] == KUBERAY_AUTH_TOKEN_KEY, where
        assert env.get("RAY_AUTH_MODE", {}).get("value") == "token", f"{where}: RAY_AUTH_MODE"
        for name, entry in env.items():
            if any(word in name for word in ("TOKEN", "KEY", "PASSWORD", "SECRET")):
                assert "value" not in entry, f"{where}: {name} is a literal value"


def test_ray_token_auth_is_enabled_for_the_operator_too() -> None:
    cluster = _cluster()
    assert cluster["authOptions"]["mode"] == "token"
    major, minor = (int(part) for part in str(cluster["rayVersion"]).split(".")[:2])
    assert (major, minor) >= (2, 52), "Ray token authentication needs Ray 2.52 or newer"


def test_router_state_is_on_a_shared_volume_in_every_container() -> None:
    claims = set()
    for where, container, pod in _containers():
        entry = _env(container).get(STATE_DIR_ENV)
        assert entry and entry.get("value"), f"{where}: {STATE_DIR_ENV} is not set to a path"
        state_dir = os.path.normpath(entry["value"])
        mounts = [
            mount
            for mount in container.get("volumeMounts", [])
            if state_dir == os.path.normpath(mount["mountPath"])
            or state_dir.startswith(os.path.normpath(mount["mountPath"]) + os.sep)
        ]
        assert mounts, f"{where}: no volume is mounted at {state_dir}"
        assert not mounts[0].get("readOnly"), f"{where}: {state_dir} is mounted read-only"
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        volume = volumes.get(mounts[0]["name"], {})
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        assert claim, f"{where}: {state_dir} is not backed by a PersistentVolumeClaim"
        claims.add(claim)
    assert len(claims) == 1, f"every pod must share one state volume, got {sorted(claims)}"
    pvcs = {
        doc["metadata"]["name"]: doc
        for doc in _documents()
        if doc["kind"] == "PersistentVolumeClaim"
    }
    (claim,) = claims
    if claim in pvcs:
        assert "ReadWriteMany" in pvcs[claim]["spec"]["accessModes"], "head and workers mount it"


def test_in_tree_autoscaling_when_a_group_sets_bounds() -> None:
    cluster = _cluster()
    bounded = [
        name
        for name, group in _groups()
        if name != "head" and ("maxReplicas" in group or "minReplicas" in group)
    ]
    if bounded:
        assert cluster.get("enableInTreeAutoscaling") is True, f"{bounded} set min/max replicas"
        for name, group in _groups():
            if name in bounded:
                assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name


def test_dashboard_is_not_exposed_without_auth() -> None:
    # The RayService controller submits serveConfigV2 through the head Service's `dashboard`
    # port, so the dashboard must listen beyond 127.0.0.1: it is kept in-cluster and behind
    # Ray's token instead (see the manifest's header).
    cluster = _cluster()
    head = cluster["headGroupSpec"]
    host = head.get("rayStartParams", {}).get("dashboard-host", "localhost")
    if host in ("127.0.0.1", "localhost"):
        return
    assert cluster.get("authOptions", {}).get("mode") == "token", "dashboard without a token"
    assert head.get("serviceType", "ClusterIP") == "ClusterIP", "head Service leaves the cluster"
    assert not head.get("enableIngress"), "an Ingress exposes the dashboard"
    head_service = head.get("headService", {}).get("spec", {})
    assert head_service.get("type", "ClusterIP") == "ClusterIP", "head Service leaves the cluster"
    for where, container, _ in _containers():
        ports = {port["containerPort"]: port for port in container.get("ports", [])}
        assert "hostPort" not in ports.get(DASHBOARD_PORT, {}), f"{where}: dashboard on the host"
        assert RAY_CLIENT_PORT not in ports, f"{where}: Ray Client port exposed"


@pytest.mark.parametrize("name", sorted(RECOMMENDED_ENV))
def test_recommended_serve_switches_are_set_on_every_container(name: str) -> None:
    for where, container, _ in _containers():
        entry = _env(container).get(name)
        assert entry is not None, f"{where}: {name} is not set"
        assert entry.get("value") == RECOMMENDED_ENV[name], f"{where}: {name}={entry.get('value')}"
