"""nodes.llm.engine_args: vLLM engine arguments from the node, unknown extra arguments named."""

from __future__ import annotations

from typing import Any

import pytest

from nodes.llm.engine_args import engine_env, engine_kwargs, unknown_engine_args
from nodes.spec import EngineSettings, ModelNode


def node(**fields: Any) -> ModelNode:
    return ModelNode.model_validate(
        {"name": "llm", "kind": "model", "runtime": "vllm", "model_path": "/m", **fields}
    )


def test_engine_kwargs_from_the_node() -> None:
    spec = node(
        engine={
            "dtype": "bfloat16",
            "max_model_len": 256,
            "cpu_kv_cache_gb": 1,
            "extra_args": {"enable_prefix_caching": False},
        }
    )
    cpu = engine_kwargs(spec, on_gpu=False)
    assert cpu["model"] == "/m" and cpu["dtype"] == "bfloat16" and cpu["max_model_len"] == 256
    assert cpu["enforce_eager"] is True and "gpu_memory_utilization" not in cpu
    assert cpu["enable_prefix_caching"] is False
    assert cpu["distributed_executor_backend"] == "uni"  # the model in the engine's process
    assert engine_env(spec.engine, {}) == {  # type: ignore[arg-type]
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # engines share hosts: no pinning by default
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # so vLLM keeps the "uni" executor on CPU
    }
    # The replica's own environment or the node's env pins them; pinned threads need vLLM's
    # worker process, which sets them up.
    env = engine_env(spec.engine, {"VLLM_CPU_OMP_THREADS_BIND": "0-3"})  # type: ignore[arg-type]
    assert "VLLM_CPU_OMP_THREADS_BIND" not in env and "VLLM_ENABLE_V1_MULTIPROCESSING" not in env
    pinned = EngineSettings(env={"VLLM_CPU_OMP_THREADS_BIND": "auto"})
    assert engine_env(pinned, {}) == {"VLLM_CPU_OMP_THREADS_BIND": "auto"}
    # On a GPU, or with several workers, vLLM's own executor choice stands.
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in engine_env(EngineSettings(), {}, on_gpu=True)
    tp = EngineSettings(tensor_parallel_size=2)
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in engine_env(tp, {})
    assert "distributed_executor_backend" not in engine_kwargs(node(num_gpus=1), on_gpu=True)
    # The replica's environment wins.
    on = engine_env(EngineSettings(), {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"})
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in on
    # Two replicas on one GPU (num_gpus: 0.5) each take their share of its memory.
    half = engine_kwargs(node(num_gpus=0.5), on_gpu=True)
    assert half["gpu_memory_utilization"] == 0.45 and half["enforce_eager"] is False
    own = engine_kwargs(node(num_gpus=0.5, engine={"gpu_memory_utilization": 0.3}), on_gpu=True)
    assert own["gpu_memory_utilization"] == 0.3


@pytest.mark.llm
def test_unknown_engine_args_are_named() -> None:
    assert unknown_engine_args({"enable_prefix_caching": True, "max_num_batched_tokens": 64}) == []
    assert unknown_engine_args({"enable_prefix_cache": True}) == ["enable_prefix_cache"]
