"""The README is the front door: its two commands and its code blocks must work as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

from ray import serve

from graphs.cluster import client_env
from tests.support import ROOT, delete_app, ensure_serve

README = open(os.path.join(ROOT, "README.md")).read()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_names_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    quick = _blocks("bash")[0]
    commands = [line.split("#")[0].strip() for line in quick.splitlines() if line.strip()]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert "bash scripts/test.sh" in ci


def test_demo_command_serves_and_scores_the_digits(ray_cluster: None) -> None:
    ensure_serve()
    out = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=ROOT,
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    score = next(json.loads(line) for line in out.stdout.splitlines() if '"accuracy"' in line)
    assert score["images"] == 450 and score["accuracy"] >= 0.93
    assert "serving on http://127.0.0.1:8000/digits" in out.stdout

    # With the demo up, the README's curl and Python blocks run as written.
    curl = next(b for b in _blocks("bash") if "curl" in b)
    command = curl.split("\n#")[0]
    reply = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert json.loads(reply.stdout)["outputs"]["label"] == [0]
    # The Security section's control call, with the token the README says where to find.
    control = next(b for b in _blocks("bash") if "control-token" in b and "weights" in b)
    done = subprocess.run(
        ["bash", "-c", textwrap.dedent(control)],
        cwd=ROOT,
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(done.stdout)["weights"] == [0.5, 0.25, 0.25], done.stdout + done.stderr

    code = "\n".join(_blocks("python"))
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "quickstart" not in serve.status().applications  # the block cleans up after itself
    # Ray may add its own warnings (e.g. "(raylet) WARNING: 12 PYTHON worker processes...").
    lines = [line for line in run.stdout.strip().splitlines() if "(raylet)" not in line]
    assert len(lines) == 2 and lines[0].startswith("[") and "scale" in lines[1]
    delete_app("digits")
