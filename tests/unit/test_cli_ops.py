"""``servegraph experiments | control | status``: tables, tokens and errors (no Ray; the
integration test runs them against a served graph)."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import pytest

from graphs.cli import main
from graphs.cli_ops import EXIT_CODES, CliError, experiments_table, read_control_token
from tests.support import ROOT

REPORT = {
    "graph": "digits",
    "routers": {
        "split": {
            "policy": "ab",
            "control": "logreg",
            "alpha": 0.05,
            "arms": {
                "logreg": {
                    "requests": 70,
                    "errors": 0,
                    "p50_ms": 3.21,
                    "p95_ms": 8.0,
                    "reward": {"count": 50, "mean": 0.9, "ci95": [0.79, 0.96], "binary": True},
                },
                "mlp": {
                    "requests": 30,
                    "errors": 1,
                    "p50_ms": 4.0,
                    "p95_ms": None,
                    "reward": {"count": 20, "mean": 0.7, "ci95": [0.48, 0.85], "binary": True},
                    "vs_control": {
                        "test": "two_proportion_z",
                        "difference": -0.2,
                        "ci95": [-0.41, 0.01],
                        "p_value": 0.03,
                        "significant": True,
                    },
                },
            },
        }
    },
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_experiments_table_shows_intervals_and_the_difference_to_control() -> None:
    lines = experiments_table(REPORT).splitlines()
    assert lines[0] == "router split (ab), control arm: logreg"
    assert lines[1].split()[:3] == ["arm", "requests", "errors"]
    logreg = next(line for line in lines if line.strip().startswith("logreg"))
    mlp = next(line for line in lines if line.strip().startswith("mlp"))
    assert "0.900 [0.790, 0.960]" in logreg and "control" in logreg
    assert "-0.200 [-0.410, +0.010] p=0.03 *" in mlp and " - " in mlp  # p95 unknown
    assert lines[-1] == "* significant at 5 %"
    assert experiments_table({"routers": {}}) == "no routers"


def test_control_token_comes_from_the_file_else_the_environment(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = os.path.join(str(tmp_path), "control.token")
    with open(path, "w") as f:
        f.write("s3cret\n")
    assert read_control_token(path) == "s3cret"
    monkeypatch.setenv("SERVEGRAPH_CONTROL_TOKEN", "from-env")
    assert read_control_token() == "from-env"
    assert read_control_token(path) == "s3cret"  # an explicit file wins
    monkeypatch.delenv("SERVEGRAPH_CONTROL_TOKEN")
    monkeypatch.setenv("SERVEGRAPH_STATE_DIR", str(tmp_path / "empty"))
    with pytest.raises(CliError) as info:
        read_control_token()
    assert info.value.code == 5 and not os.path.exists(tmp_path / "empty" / "control.token")


def test_control_without_a_token_exits_5_with_one_line(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = os.path.join(str(tmp_path), "nope")
    code = main(["control", "digits", "split", "pause", "--token-file", missing, "--json"])
    out, err = capsys.readouterr()
    assert code == 5 and len(err.strip().splitlines()) == 1 and "no control token" in err
    assert json.loads(out)["exit_code"] == 5


def test_unreachable_servers_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    assert main(["experiments", "digits", "--url", url]) == 3
    assert main(["status", "--address", url, "--url", url]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("servegraph ") for line in err)


def test_control_checks_its_body_before_sending(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["control", "g", "r", "weights", "--body", "[1]", "--url", "http://127.0.0.1:1"])
    assert code == 2 and "--body must be a JSON object" in capsys.readouterr().err


def test_every_exit_code_is_in_the_readme_and_the_module_docs() -> None:
    import graphs.cli

    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    for code in EXIT_CODES:
        assert f"| {code} |" in readme, code
        assert f"    {code}: " in (graphs.cli.__doc__ or ""), code
