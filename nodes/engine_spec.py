"""vLLM engine settings of a ``runtime: vllm`` model node (the ``engine:`` section)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from nodes.spec_base import Frozen


class EngineSettings(Frozen):
    """vLLM engine settings of a ``runtime: vllm`` model node (``AsyncEngineArgs`` fields)."""

    dtype: str = Field(
        "auto", description="Weights and activations dtype: auto, float32, bfloat16, float16."
    )
    max_model_len: int | None = Field(
        None, ge=16, description="Longest prompt + completion in tokens (default: the model's)."
    )
    gpu_memory_utilization: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Share of the GPU's memory the engine may take (default: 0.9, scaled "
        "down to the node's num_gpus when that is a fraction).",
    )
    tensor_parallel_size: int = Field(
        1, ge=1, description="GPUs one replica shards the model over (needs num_gpus equal)."
    )
    max_num_seqs: int | None = Field(
        None, ge=1, description="Most sequences the engine batches at once (vLLM's default)."
    )
    enforce_eager: bool | None = Field(
        None, description="Skip CUDA graphs / compilation (default: on for CPU, off for GPU)."
    )
    seed: int | None = Field(None, description="Engine seed (per-request seeds also work).")
    tokenizer: str | None = Field(
        None, description="Tokenizer directory, when not the model's own (model_path)."
    )
    cpu_kv_cache_gb: int | None = Field(
        None,
        ge=1,
        description="CPU backend only: KV-cache size in whole GiB (VLLM_CPU_KVCACHE_SPACE); "
        "keep it small on small machines (default: vLLM's).",
    )
    stream_batch_ms: float = Field(
        20.0,
        ge=0,
        le=1000,
        description="Streaming: tokens that come within this many ms of the last chunk sent "
        "share the next chunk (the first token goes out at once); fewer, larger chunks when "
        "the engine is fast. 0: one chunk per engine step.",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables set in the replica before the engine starts.",
    )
    extra_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other AsyncEngineArgs field, passed through as given "
        "(e.g. {enable_prefix_caching: false, swap_space: 1}).",
    )
