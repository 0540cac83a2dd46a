"""The benchmark's model: an MLP written as ONNX with ``onnx.helper``, and its bare timing."""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import numpy as np

IN_DIM, OUT_DIM = 64, 10


def build_mlp(path: str, hidden: int, layers: int, seed: int = 0) -> dict[str, Any]:
    """Write an MLP ``64 -> hidden (x layers) -> 10`` as ONNX; returns its description."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    dims = [IN_DIM, *([hidden] * layers), OUT_DIM]
    nodes, inits = [], []
    prev = "input"
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        bias = (rng.standard_normal(b) * 0.01).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
        last = i == len(dims) - 2
        added = "output" if last else f"add{i}"
        nodes += [
            helper.make_node("MatMul", [prev, f"w{i}"], [f"mm{i}"]),
            helper.make_node("Add", [f"mm{i}", f"b{i}"], [added]),
        ]
        if not last:
            nodes.append(helper.make_node("Relu", [added], [f"relu{i}"]))
            prev = f"relu{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", IN_DIM])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", OUT_DIM])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    params = sum(a * b + b for a, b in itertools.pairwise(dims))
    return {"dims": dims, "params": params, "mb": round(os.path.getsize(path) / 2**20, 1)}


def time_model(path: str, threads: int, batch_sizes: tuple[int, ...] = (1, 32)) -> dict[str, Any]:
    """Bare ONNX Runtime time per call (ms) at a few batch sizes: the most batching can buy."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    out = {}
    for bs in batch_sizes:
        x = np.random.default_rng(1).random((bs, IN_DIM), dtype=np.float32)
        for _ in range(3):
            session.run(None, {"input": x})
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 0.5 or n < 5:
            session.run(None, {"input": x})
            n += 1
        ms = (time.perf_counter() - t0) / n * 1000
        out[str(bs)] = {"ms_per_call": round(ms, 3), "rows_per_s": round(bs / ms * 1000, 1)}
    return out
