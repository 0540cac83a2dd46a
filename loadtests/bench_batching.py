"""Dynamic batching: an ONNX model node's throughput at concurrency 32, batching on vs off.

Builds an MLP (64 -> hidden x layers -> 10; MatMul+Add+Relu, float32, symbolic batch dim,
fixed-seed weights) with ``onnx.helper`` into a temp dir, then, in one fresh private cluster
(``graphs.cluster.start``, token auth) with ``graphs.cluster.RECOMMENDED_ENV``, deploys
single-node graphs compiled with ``graphs.compile_graph(graphs.parse_graph(...))``:

- ``mlp_batched``: the model node with ``batching: {max_batch_size: 32, max_wait_ms: 5}``;
- ``mlp_unbatched``: the same node without batching;
- ``http_ceiling`` (unless ``--no-ceiling``): one identity preprocess node, the same request:
  what the HTTP path (HAProxy, ingress, one hop) carries at this concurrency with no model;
- ``mlp_batched_wide`` (only with ``--wide``): batched, the ingress given
  ``max_ongoing_requests: 64``.

They are measured over HTTP (``POST /<name>/predict``) with ``loadgen.run`` at c=32 in
alternating rounds, and the unbatched app also at c=5 (its node's max_ongoing_requests: the
unbatched path at its best); the batch sizes formed come from the node's ``stats`` method.
Then (unless ``--no-handle``) the model node's deployment handle is called from the driver by
32 concurrent callers (and the unbatched one by 5): the batching gain without the HTTP path.
Target: batched/unbatched HTTP throughput at c=32 >= 2.5.

    python loadtests/bench_batching.py [--seconds 8] [--rounds 3] [--hidden 8192] [--layers 3]

The model is in ``_bench_batching/model.py``, the cluster side in ``_bench_batching/worker.py``,
the checks and the report in ``_bench_batching/report.py``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import _harness as h
from _bench_batching.model import build_mlp, time_model
from _bench_batching.report import analyse, render
from _bench_batching.worker import worker


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    h.add_timing(parser, per="app", seconds=8.0, rounds=3, warmup=3.0)
    h.add_concurrency(parser, 32)
    parser.add_argument("--hidden", type=int, default=8192, help="hidden width (default 8192)")
    parser.add_argument("--layers", type=int, default=3, help="hidden layers (default 3)")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--model-cpus", type=int, default=1)
    parser.add_argument(
        "--no-handle", dest="handle", action="store_false", help="skip the handle-level measurement"
    )
    parser.add_argument(
        "--wide",
        action="store_true",
        help="also a batched app whose ingress takes 64 requests at once",
    )
    parser.add_argument(
        "--no-ceiling",
        dest="ceiling",
        action="store_false",
        help="skip the no-model app that shows what the HTTP path can carry",
    )
    h.add_keep_logs(parser)
    args = h.parse(parser, argv, worker)
    if args is None:
        return 0

    from graphs.cluster import RECOMMENDED_ENV

    model_dir = tempfile.mkdtemp(prefix="lt_onnx_")
    try:
        model_path = os.path.join(model_dir, "mlp.onnx")
        model = build_mlp(model_path, args.hidden, args.layers)
        timing = time_model(model_path, args.model_cpus, (1, args.max_batch_size))
        apps = ["mlp_batched", "mlp_unbatched"]
        if args.wide:
            apps.append("mlp_batched_wide")
        if args.ceiling:
            apps.append("http_ceiling")
        spec = {
            "apps": apps,
            "model_path": model_path,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "max_batch_size": args.max_batch_size,
            "max_wait_ms": args.max_wait_ms,
            "model_cpus": args.model_cpus,
            "handle": args.handle,
        }
        n_meas = args.rounds * (len(apps) + (2 if args.handle else 0))
        raw = h.run_worker(
            os.path.abspath(__file__),
            spec,
            dict(RECOMMENDED_ENV),
            tag="batching",
            timeout_s=300 + n_meas * (args.seconds + 5),
            keep_logs=args.keep_logs,
        )
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)

    found = analyse(args, raw, timing)
    checks, notes = found["checks"], found["notes"]
    http, handle = found["summary"]["http"], found["summary"]["handle"]
    result = {
        "benchmark": "bench_batching",
        "model": model,
        "model_timing": timing,
        "model_gain": found["model_gain"],
        "checks": checks,
        "summary": found["summary"],
        "notes": notes,
        "machine": raw["machine"],
        "all_pass": checks[0]["verdict"] == "PASS",
    }
    printed = {k: v for k, v in result.items() if k != "summary"} | {
        "http": {
            a: {k: s[k] for k in ("rps", "p50_ms", "p95_ms", "errors", "batches")}
            for a, s in http.items()
        },
        "handle": {a: {k: s[k] for k in ("rps", "p50_ms", "batches")} for a, s in handle.items()},
    }
    h.emit(
        "bench_batching", render(args, result), {**result, "raw": raw}, printed, args.reports_dir
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
