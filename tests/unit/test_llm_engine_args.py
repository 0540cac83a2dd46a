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
    assert engine_env(spec.engine, {}) == {  # type: ignore[arg-type]
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # engines share hosts: no pinning by default
    }
    # The replica's own environment or the node's env pins them.
    assert "VLLM_CPU_OMP_THREADS_BIND" not in engine_env(
        spec.engine,  # type: ignore[arg-type]
        {"VLLM_CPU_OMP_THREADS_BIND": "0-3"},
    )
    pinned = EngineSettings(env={"VLLM_CPU_OMP_THREADS_BIND": "auto"})
    assert engine_env(pinned, {})["VLLM_CPU_OMP_THREADS_BIND"] == "auto"
    # Two replicas on one GPU (num_gpus: 0.5) each take their share of its memory.
    half = engine_kwargs(node(num_gpus=0.5), on_gpu=True)
    assert half["gpu_memory_utilization"] == 0.45 and half["enforce_eager"] is False
    own = engine_kwargs(node(num_gpus=0.5, engine={"gpu_memory_utilization": 0.3}), on_gpu=True)
    assert own["gpu_memory_utilization"] == 0.3


@pytest.mark.llm
def test_unknown_engine_args_are_named() -> None:
    assert unknown_engine_args({"enable_prefix_caching": True, "max_num_batched_tokens": 64}) == []
    assert unknown_engine_args({"enable_prefix_cache": True}) == ["enable_prefix_cache"]
