"""Run ``locustfile.py`` headless against a private deployment of the digits graph.

Starts its own private Ray cluster (``graphs.cluster.start``, token auth) with
``graphs.cluster.RECOMMENDED_ENV`` (Serve on 127.0.0.1:8100, not the shared 8000), deploys
``graphs/examples/digits.yaml`` at ``/digits``, runs ``locust -f loadtests/locustfile.py
--headless -u U -r U -t Ts --host http://127.0.0.1:8100`` and reports its per-endpoint figures.
The digits models must be trained first (``python -m graphs.examples.digits train``).

    python loadtests/locust_selfcheck.py [--seconds 10] [--users 4]
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from typing import Any

import _harness as h

GRAPH_FILE = os.path.join(h.REPO, "graphs", "examples", "digits.yaml")


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    from ray import serve

    import graphs

    out: dict[str, Any] = {}
    with h.ray_cluster(num_cpus=4):
        app = graphs.compile_graph(graphs.load_graph(GRAPH_FILE), validate=False)
        serve.run(app, name="digits", route_prefix="/digits")
        h.wait_ready(
            f"{h.BASE_URL}/digits/predict", {"inputs": {"input": [[0.0] * 64]}}, timeout_s=120
        )
        csv_prefix = os.path.join(h.private_dir(), "locust")
        locust = shutil.which("locust", path=os.path.dirname(sys.executable)) or "locust"
        cmd = [
            locust,
            "-f",
            os.path.join(h.HERE, "locustfile.py"),
            "--headless",
            "-u",
            str(spec["users"]),
            "-r",
            str(spec["users"]),
            "-t",
            f"{spec['seconds']}s",
            "--host",
            h.BASE_URL,
            "--csv",
            csv_prefix,
            "--only-summary",
        ]
        with h.CpuWatch() as cpu:
            proc = subprocess.run(
                cmd,
                cwd=h.REPO,
                capture_output=True,
                text=True,
                timeout=spec["seconds"] + 120,
                check=False,
            )
        out["command"] = " ".join(cmd[1:])
        out["exit_code"] = proc.returncode
        out["output_tail"] = (proc.stdout + proc.stderr)[-3000:]
        out["cpu"] = cpu.result
        with open(f"{csv_prefix}_stats.csv", encoding="utf-8") as f:
            out["stats"] = list(csv.DictReader(f))
        out["machine"] = h.machine_info()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="seconds of load (10)")
    parser.add_argument("--users", type=int, default=4, help="locust users (4)")
    h.add_keep_logs(parser)
    args = h.parse(parser, argv, worker)
    if args is None:
        return 0

    from graphs.cluster import RECOMMENDED_ENV

    artifacts = os.path.join(h.REPO, "artifacts", "digits")
    missing = [
        n for n in ("logreg.onnx", "mlp.pt") if not os.path.exists(os.path.join(artifacts, n))
    ]
    if missing:
        print(
            f"missing {missing} in {artifacts}: run `python -m graphs.examples.digits train`",
            file=sys.stderr,
        )
        return 2
    raw = h.run_worker(
        os.path.abspath(__file__),
        {"seconds": args.seconds, "users": args.users},
        dict(RECOMMENDED_ENV),
        tag="locust",
        timeout_s=300 + args.seconds,
        keep_logs=args.keep_logs,
    )
    rows = [
        [
            r["Name"],
            r["Request Count"],
            r["Failure Count"],
            r["Median Response Time"],
            r["95%"],
            f"{float(r['Requests/s']):.1f}",
        ]
        for r in raw["stats"]
    ]
    markdown = "\n".join(
        [
            "# Locust self-check: digits graph",
            "",
            f"Measured {h.now()}: `locust {raw['command']}` against a private deployment of "
            "`graphs/examples/digits.yaml` (private cluster from `graphs.cluster.start`, token "
            "auth, `graphs.cluster.RECOMMENDED_ENV`). "
            f"Locust exit code {raw['exit_code']} (0: no failed requests).",
            "",
            h.md_table(["endpoint", "requests", "failures", "median ms", "p95 ms", "req/s"], rows),
            "",
            f"Conditions: {json.dumps(raw['machine'])}; CPU while measuring: "
            f"{json.dumps(raw['cpu'])}.",
        ]
    )
    path = h.write_report("locust_selfcheck", markdown, raw, args.reports_dir)
    print(markdown)
    if raw["exit_code"] != 0:
        print(raw["output_tail"], file=sys.stderr)
    print(f"\nreport: {path}", file=sys.stderr)
    return 0 if raw["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
