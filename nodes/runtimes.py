"""Model runtimes: each loads a model once and returns a synchronous ``infer(payload) -> dict``.

``onnx`` runs an ONNX Runtime session (CUDA provider when the replica holds a GPU and
onnxruntime-gpu is installed, CPU otherwise); ``torch`` runs TorchScript, ``torch.export`` or an
``nn.Module`` from an import path in inference mode on the replica's device; ``python`` calls any
callable class.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from nodes.calls import Payload
from nodes.errors import RequestValidationError
from nodes.imports import resolve
from nodes.spec import ModelNode

logger = logging.getLogger(__name__)

Infer = Callable[[Payload], Payload]
#: What a loader returns: the inference function and where it runs (device, providers).
Loaded = tuple[Infer, dict[str, Any]]


def replica_gpu_ids() -> list[Any]:
    """GPU ids Ray assigned to this replica (empty outside Ray or without GPUs)."""
    try:
        import ray

        return list(ray.get_gpu_ids()) if ray.is_initialized() else []
    except Exception:
        return []


def threads_for(spec: ModelNode) -> int:
    """Intra-op threads: the node's setting, else its CPU reservation, at least one."""
    return spec.intra_op_threads or max(1, round(spec.num_cpus))


def _pick(payload: Payload, names: list[str]) -> list[Any]:
    missing = [n for n in names if n not in payload]
    if missing:
        raise RequestValidationError(
            f"inputs.{missing[0]}", f"the model needs inputs {names}, got {sorted(payload)}"
        )
    return [payload[n] for n in names]


def _name_outputs(values: Any, names: list[str] | None, default: list[str]) -> Payload:
    if isinstance(values, dict):
        return dict(values)
    if not isinstance(values, (list, tuple)):
        values = [values]
    names = names or default
    if len(names) < len(values):
        names = names + [f"output_{i}" for i in range(len(names), len(values))]
    return dict(zip(names, values))


def load_onnx(spec: ModelNode) -> Loaded:
    """An ONNX Runtime session for ``spec.model_path``."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # ONNX Runtime is an extra: one build, CPU or CUDA, never both
        raise ImportError(
            f"node {spec.name!r} uses runtime 'onnx' but ONNX Runtime is not installed: "
            "pip install 'servegraph[onnx]' (CPU) or 'servegraph[gpu]' (CUDA), not both"
        ) from exc

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads_for(spec)
    opts.inter_op_num_threads = 1
    providers: list[Any] = ["CPUExecutionProvider"]
    if replica_gpu_ids():
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": 0}))
        else:
            logger.warning(
                "node %s holds a GPU but onnxruntime has no CUDA provider; "
                "install the 'gpu' extra (onnxruntime-gpu). Running on CPU.",
                spec.name,
            )
    session = ort.InferenceSession(spec.model_path, opts, providers=providers)
    inputs = session.get_inputs()
    in_names = spec.input_names or [i.name for i in inputs]
    dtypes = {i.name: _ORT_TYPES.get(i.type, np.float32) for i in inputs}
    session_out = [o.name for o in session.get_outputs()]

    def infer(payload: Payload) -> Payload:
        if spec.input_names is None and len(inputs) == 1 and len(payload) == 1:
            values = list(payload.values())
        else:
            values = _pick(payload, in_names)
        feeds: dict[str, Any] = {
            i.name: np.asarray(v, dtype=dtypes[i.name]) for i, v in zip(inputs, values)
        }
        return _name_outputs(session.run(None, feeds), spec.output_names, session_out)

    return infer, {
        "runtime": "onnx",
        "providers": session.get_providers(),
        "threads": opts.intra_op_num_threads,
    }


_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def load_torch(spec: ModelNode) -> Loaded:
    """A TorchScript file, a ``torch.export`` program, or an ``nn.Module`` from model_class."""
    import torch

    torch.set_num_threads(threads_for(spec))
    gpus = replica_gpu_ids()
    device = torch.device("cuda:0" if gpus and torch.cuda.is_available() else "cpu")
    if gpus and device.type == "cpu":
        logger.warning(
            "node %s holds a GPU but torch sees no CUDA device; running on CPU", spec.name
        )
    module: Any
    if spec.model_class is not None:
        module = resolve(spec.model_class)(**spec.init_kwargs)
        if spec.state_dict:
            module.load_state_dict(
                torch.load(spec.state_dict, map_location="cpu", weights_only=True)
            )
        module = module.eval().to(device)
    elif str(spec.model_path).endswith(".pt2"):
        program = torch.export.load(str(spec.model_path))
        if device.type != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, device)
        module = program.module()  # an exported program is already in inference form
    else:
        module = torch.jit.load(spec.model_path, map_location=device).eval()

    def infer(payload: Payload) -> Payload:
        values = _pick(payload, spec.input_names) if spec.input_names else list(payload.values())
        tensors = [torch.as_tensor(np.asarray(v)).to(device) for v in values]
        with torch.inference_mode():
            out = module(*tensors)
        if isinstance(out, dict):
            return {k: v.detach().cpu().numpy() for k, v in out.items()}
        outs = out if isinstance(out, (list, tuple)) else [out]
        arrays = [o.detach().cpu().numpy() for o in outs]
        return _name_outputs(arrays, spec.output_names, ["output"])

    return infer, {"runtime": "torch", "device": str(device), "threads": torch.get_num_threads()}


def load_python(spec: ModelNode) -> Loaded:
    """Any callable class: instantiated once, then called with the payload dict."""
    target = resolve(spec.model_class)
    model: Any = target(**spec.init_kwargs) if inspect.isclass(target) else target

    def infer(payload: Payload) -> Payload:
        out = model(payload)
        if not isinstance(out, dict):
            out = _name_outputs(out, spec.output_names, ["output"])
        return out

    return infer, {"runtime": "python"}


LOADERS: dict[str, Callable[[ModelNode], Loaded]] = {
    "onnx": load_onnx,
    "torch": load_torch,
    "python": load_python,
}
