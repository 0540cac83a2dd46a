"""The ``servegraph`` command line and the graph JSON schema for editors (no Ray)."""

from __future__ import annotations

import glob
import json
import os
from typing import Any

import jsonschema
import pytest
import yaml

from graphs.cli import SCHEMA_PATH, graph_schema, main
from tests.support import ROOT

GRAPHS = sorted(glob.glob(os.path.join(ROOT, "graphs", "examples", "*.yaml")))
VALID = {
    "name": "tiny",
    "inputs": [{"name": "x", "shape": [-1, 1]}],
    "nodes": [
        {"name": "pre", "kind": "preprocess", "function": "tests.integration.helpers:double"},
        {
            "name": "echo",
            "kind": "model",
            "runtime": "python",
            "model_class": "tests.integration.helpers:Echo",
        },
    ],
    "entry": ["pre", "echo"],
}


def write(tmp_path: Any, graph: dict[str, Any]) -> str:
    path = os.path.join(str(tmp_path), "graph.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(graph, f)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_shipped_schema_is_the_specs_own() -> None:
    with open(SCHEMA_PATH) as f:
        assert json.load(f) == graph_schema(), (
            "regenerate: servegraph schema > graphs/graph.schema.json"
        )


@pytest.mark.parametrize("path", GRAPHS, ids=os.path.basename)
def test_every_shipped_graph_names_and_passes_the_schema(path: str) -> None:
    with open(path) as f:
        first = f.readline()
        data = yaml.safe_load(first + f.read())
    assert first.strip() == "# yaml-language-server: $schema=../graph.schema.json"
    jsonschema.validate(data, graph_schema())


def test_the_schema_refuses_what_validation_refuses() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**VALID, "nodez": []}, graph_schema())
    with pytest.raises(jsonschema.ValidationError):
        bad = {**VALID, "nodes": [{**VALID["nodes"][0], "kind": "teleport"}]}
        jsonschema.validate(bad, graph_schema())


def test_validate_a_good_graph(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, VALID)
    code, out = run(capsys, "validate", path)
    assert code == 0 and "graph 'tiny' is valid (2 nodes)" in out
    assert "  pre: fused into ingress (fusion: cheap)" in out  # where each node runs
    code, out = run(capsys, "validate", path, "--json")
    assert code == 0 and json.loads(out) == {
        "valid": True,
        "graph": "tiny",
        "nodes": 2,
        "placement": {
            "pre": {"deployment": "ingress", "why": "fused into ingress (fusion: cheap)"},
            "echo": {
                "deployment": "echo",
                "why": "own deployment (model nodes keep a deployment of their own under "
                "fusion: cheap)",
            },
        },
    }


def test_validate_lists_every_problem_with_its_path(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = {**VALID, "entry": ["pre", "nope"], "nodes": [VALID["nodes"][0], VALID["nodes"][0]]}
    path = write(tmp_path, bad)
    code, out = run(capsys, "validate", path)
    assert code == 1
    lines = out.strip().splitlines()
    assert len(lines) >= 2 and all(": " in line for line in lines)
    assert any("nope" in line for line in lines) and any("pre" in line for line in lines)
    code, out = run(capsys, "--json", "validate", path)
    report = json.loads(out)
    assert code == 1 and report["valid"] is False and len(report["problems"]) == len(lines)
    assert all(p["path"].startswith(path) for p in report["problems"])


def test_validate_a_missing_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "validate", "/nonexistent/graph.yaml")
    assert code == 1 and len(out.strip().splitlines()) == 1 and "cannot read" in out


def test_build_writes_a_serve_config(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, VALID)
    out_file = os.path.join(str(tmp_path), "serve.yaml")
    code, out = run(capsys, "build", path, "-o", out_file)
    assert code == 0 and out_file in out
    with open(out_file) as f:
        config = yaml.safe_load(f)
    app = config["applications"][0]
    assert app == {
        "name": "tiny",
        "route_prefix": "/tiny",
        "import_path": "graphs.builder:build_app",
        "args": {"graph": path},
    }
    code, out = run(capsys, "build", path)
    assert code == 0 and yaml.safe_load(out) == config
    code, out = run(capsys, "build", write(tmp_path, {**VALID, "entry": "nope"}))
    assert code == 1


def test_schema_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "schema")
    assert code == 0 and json.loads(out) == graph_schema()


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_readme_cli_block_runs_as_written(digits_artifacts: str, tmp_path: Any) -> None:
    import re
    import subprocess
    import sys

    with open(os.path.join(ROOT, "README.md")) as f:
        block = next(
            b for b in re.findall(r"```bash\n(.*?)```", f.read(), flags=re.S) if "servegraph" in b
        )
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    for line in block.splitlines():
        command = line.split("#")[0].split("&& serve run")[0].strip()
        done = subprocess.run(  # in a folder of its own: what it writes lands there
            ["bash", "-c", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    with open(os.path.join(str(tmp_path), "serve.yaml")) as f:
        assert yaml.safe_load(f)["applications"][0]["name"] == "digits"
    with open(os.path.join(str(tmp_path), "graph.schema.json")) as f:
        assert json.load(f) == graph_schema()
