"""A short headless locust run against the digits demo deployed from its config."""

from __future__ import annotations

import csv
import os
import subprocess

from graphs.examples.digits import ensure_trained
from tests.support import (
    BASE_URL,
    ROOT,
    delete_app,
    ensure_serve,
    serve_cli,
    tool,
    wait_app_running,
)


def test_locust_smoke(ray_cluster: None, tmp_path: object) -> None:
    ensure_serve()
    ensure_trained()
    serve_cli("deploy", "configs/digits.yaml")
    wait_app_running("digits")
    prefix = os.path.join(str(tmp_path), "smoke")
    try:
        out = subprocess.run(
            [
                tool("locust"),
                "-f",
                "loadtests/locustfile.py",
                "--headless",
                "-u",
                "4",
                "-r",
                "4",
                "-t",
                "6s",
                "--host",
                BASE_URL,
                "--csv",
                prefix,
                "--only-summary",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        delete_app("digits")
    assert out.returncode == 0, out.stderr[-3000:]
    with open(f"{prefix}_stats.csv") as f:
        total = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")
    assert int(total["Request Count"]) > 20
    assert int(total["Failure Count"]) == 0
