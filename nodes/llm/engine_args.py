"""vLLM engine arguments for a ``runtime: vllm`` node: its environment and ``AsyncEngineArgs``
keyword arguments, and the names vLLM takes (read from its source, without importing it) to
check ``engine.extra_args`` at build time."""

from __future__ import annotations

import ast
import importlib.util
import os
from collections.abc import Mapping
from typing import Any

from nodes.spec import EngineSettings, ModelNode


def engine_env(
    settings: EngineSettings, environ: Mapping[str, str] = os.environ, on_gpu: bool = False
) -> dict[str, str]:
    """Environment variables the engine needs before it starts.

    Args:
        settings: the node's engine settings (``env`` wins over the defaults here).
        environ: the replica's environment (a variable set there is left as it is).
        on_gpu: whether the replica holds a GPU.
    """
    env = dict(settings.env)
    if settings.cpu_kv_cache_gb is not None:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(settings.cpu_kv_cache_gb))
    if "VLLM_CPU_OMP_THREADS_BIND" not in environ:
        # vLLM's CPU backend pins each engine's worker to the same cores ("auto") as if it
        # owned the host; replicas share hosts, so two engines would share one core while the
        # others idle (two engines start in 79 s pinned, 57 s not, on 2 cores). The OS places
        # them instead; set the variable in ``env`` to pin.
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    bind = env.get("VLLM_CPU_OMP_THREADS_BIND", environ.get("VLLM_CPU_OMP_THREADS_BIND"))
    if (
        not on_gpu
        and settings.tensor_parallel_size == 1
        and bind == "nobind"
        and "VLLM_ENABLE_V1_MULTIPROCESSING" not in environ
    ):
        # On CPU vLLM runs the model in a worker process of its own beside the engine core
        # unless this is 0 (only to set up the worker's thread binding, which nobind skips):
        # one process and one import of vLLM fewer, 35 s -> 19 s to start the tiny model.
        # The engine core keeps its own process (AsyncLLM always starts one).
        env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    return env


def engine_kwargs(spec: ModelNode, on_gpu: bool) -> dict[str, Any]:
    """``AsyncEngineArgs`` keyword arguments for a ``runtime: vllm`` node.

    Args:
        spec: the node.
        on_gpu: whether the replica holds a GPU (GPU-only settings are left out on CPU).
    """
    settings = spec.engine or EngineSettings()
    kwargs: dict[str, Any] = {
        "model": spec.model_path,
        "served_model_name": spec.name,
        "dtype": settings.dtype,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "disable_log_stats": True,
        # Eager mode on CPU: compiling the graph costs minutes of start-up on small machines.
        "enforce_eager": settings.enforce_eager
        if settings.enforce_eager is not None
        else not on_gpu,
    }
    optional = {
        "max_model_len": settings.max_model_len,
        "max_num_seqs": settings.max_num_seqs,
        "seed": settings.seed,
        "tokenizer": settings.tokenizer,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    if not on_gpu and settings.tensor_parallel_size == 1:
        # The model in the engine-core process: vLLM's CPU platform keeps its multiprocess
        # executor instead unless VLLM_ENABLE_V1_MULTIPROCESSING=0 (see engine_env).
        kwargs["distributed_executor_backend"] = "uni"
    if on_gpu:
        share = settings.gpu_memory_utilization
        if share is None:
            # Replicas sharing a GPU (num_gpus: 0.5) each take their share of its memory.
            share = round(0.9 * min(1.0, spec.num_gpus or 1.0), 4)
        kwargs["gpu_memory_utilization"] = share
    kwargs.update(settings.extra_args)
    return kwargs


def engine_arg_names() -> set[str] | None:
    """Names ``AsyncEngineArgs`` takes, read from vLLM's source without importing it (the
    import takes seconds); None when vLLM is not installed or its source is not readable."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), "engine", "arg_utils.py")
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError):
        return None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in ("EngineArgs", "AsyncEngineArgs"):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
    return names or None


def unknown_engine_args(extra: Mapping[str, Any]) -> list[str]:
    """Keys of ``engine.extra_args`` that vLLM's engine does not take (none when unknowable)."""
    names = engine_arg_names()
    return [] if names is None else sorted(k for k in extra if k not in names)
