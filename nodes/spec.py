"""Node kinds and their settings: the part of the graph spec every node behaviour reads.

Frozen pydantic v2 models (``extra="forbid"``, a description on every field). Field-level rules
(types, ranges, GPU fractions) live on the fields; rules that need the whole graph (references,
cycles, imports, files) live in :mod:`graphs.validate`. Router nodes are in :mod:`routing.spec`,
the whole graph in :mod:`graphs.spec`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from autoscale.settings import ScalingSettings
from nodes.call_spec import BreakerSpec, RetrySpec
from nodes.engine_spec import EngineSettings
from nodes.spec_base import NAME_PATTERN, Frozen, Ref, refs

__all__ = [
    "BUILTIN_COMBINERS",
    "DATATYPES",
    "NAME_PATTERN",
    "BatchingSpec",
    "BreakerSpec",
    "DeploymentOptions",
    "EngineSettings",
    "EnsembleNode",
    "Frozen",
    "ModelNode",
    "NodeBase",
    "PreprocessNode",
    "Ref",
    "RetrySpec",
    "TensorSpec",
    "check_gpus",
    "refs",
]

DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)


def check_gpus(value: float) -> float:
    """Fractional GPUs must be in (0, 1]; more than one GPU must be a whole number."""
    if value < 0 or not math.isfinite(value):
        raise ValueError(f"must be a finite number >= 0, got {value}")
    if value > 1 and not float(value).is_integer():
        raise ValueError(
            f"must be a fraction in (0, 1] or a whole number of GPUs, got {value} "
            f"(use e.g. 0.5 or {math.ceil(value)})"
        )
    return value


class TensorSpec(Frozen):
    """One named tensor of the graph's input or output (Open Inference Protocol metadata)."""

    name: str = Field(description="Tensor name, as clients send it and OIP metadata lists it.")
    datatype: Literal[DATATYPES] = Field(  # type: ignore[valid-type]
        "FP32", description="OIP datatype, e.g. FP32, INT64, BYTES."
    )
    shape: list[int] = Field(
        default_factory=lambda: [-1],
        description="Shape; -1 marks a variable dimension (the first is usually the batch).",
    )
    allow_non_finite: bool = Field(
        False,
        description="Accept NaN and Infinity in this input (refused with 422 by default, since "
        "most models turn them into garbage silently).",
    )

    @field_validator("shape")
    @classmethod
    def _dims(cls, shape: list[int]) -> list[int]:
        bad = [d for d in shape if d < -1 or d == 0]
        if bad:
            raise ValueError(f"dimensions must be positive or -1 (variable), got {shape}")
        return shape


class BatchingSpec(Frozen):
    """Dynamic batching of one model node, built on ``serve.batch``."""

    max_batch_size: int = Field(32, ge=1, le=4096, description="Most requests merged per batch.")
    max_wait_ms: float = Field(
        5.0, ge=0, le=10_000, description="Longest a request waits for its batch to fill (ms)."
    )


class DeploymentOptions(Frozen):
    """Ray Serve options of one deployment; a Serve config's ``deployments:`` entries override."""

    num_replicas: int | Literal["auto"] | None = Field(
        None, description="Fixed replica count (or 'auto'); Ray Serve's default when omitted."
    )
    num_cpus: float = Field(
        0.1, ge=0, description="CPUs each replica reserves (fractions allowed); sizes thread pools."
    )
    num_gpus: float = Field(
        0, description="GPUs each replica reserves: a fraction in (0, 1] or a whole number."
    )
    memory_mb: int | None = Field(None, ge=1, description="Memory each replica reserves (MiB).")
    max_ongoing_requests: int | None = Field(
        None, ge=1, description="Requests one replica works on at once (Ray Serve option)."
    )
    max_queued_requests: int | None = Field(
        None, ge=-1, description="Requests queued per caller before 503 (-1: unbounded)."
    )
    autoscaling_config: dict[str, Any] | None = Field(
        None, description="Ray Serve autoscaling_config for this node's deployment."
    )
    graceful_shutdown_timeout_s: float | None = Field(
        None,
        ge=0,
        description="Seconds a stopping replica may finish its requests before it is killed "
        "(Ray Serve option; default 20).",
    )

    _check_gpus = field_validator("num_gpus")(check_gpus)


class NodeBase(DeploymentOptions):
    """What every node kind has: a name, deployment options and servegraph's autoscaling."""

    name: str = Field(
        pattern=NAME_PATTERN,
        description="Unique node name; also its deployment's name when it has one of its own.",
    )
    autoscaling: ScalingSettings | None = Field(
        None,
        description="Scale this node with servegraph's policy (latency SLO, queue target, "
        "cooldowns); replaces num_replicas and autoscaling_config.",
    )
    fuse: bool | None = Field(
        None,
        description="Run this node inside the deployment that calls it (true) or in a "
        "deployment of its own (false); unset follows the graph's fusion setting.",
    )
    timeout_s: float | None = Field(
        None,
        gt=0,
        description="Longest one call of this node may take (s); expiry answers 504 naming "
        "the node. Within the graph's timeout_s, which always applies.",
    )
    retries: RetrySpec = Field(
        default_factory=lambda: RetrySpec(),
        description="How callers retry a call of this node that failed (default: once, when "
        "its replica died or could not be reached).",
    )
    breaker: BreakerSpec | None = Field(
        None,
        description="Circuit breaker: on a router per arm, on an ensemble per member, on other "
        "nodes over the calls made to it (off when omitted).",
    )

    @model_validator(mode="after")
    def _one_way_to_size(self) -> NodeBase:
        if self.autoscaling is not None:
            for other in ("num_replicas", "autoscaling_config"):
                if getattr(self, other) is not None:
                    raise ValueError(
                        f"set either autoscaling (servegraph's policy) or {other}, not both"
                    )
        return self

    def children(self) -> list[str]:
        """Names of the nodes this node calls itself (router arms, ensemble members)."""
        return []

    def calls(self) -> list[tuple[list[str], float]]:
        """The chains this node calls, each with the share of its traffic that goes there
        (router arms by weight, a shadow by its fraction, ensemble members 1.0)."""
        return []


class PreprocessNode(NodeBase):
    """Transforms a payload: a function or class named by import path, or a Python object."""

    kind: Literal["preprocess"] = Field(description="Node kind.")
    function: Any = Field(
        description="Import path 'pkg.module:attr' (or a Python callable) taking and returning "
        "a payload dict; sync or async. A class is instantiated once with init_kwargs."
    )
    init_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for a class's constructor."
    )


class ModelNode(NodeBase):
    """Runs a model: ONNX Runtime, PyTorch, vLLM (LLMs), or any Python callable class."""

    kind: Literal["model"] = Field(description="Node kind.")
    runtime: Literal["onnx", "torch", "python", "vllm"] = Field(description="Inference runtime.")
    model_path: str | None = Field(
        None,
        description="Model file: .onnx for onnx; TorchScript (.pt/.ts) or torch.export (.pt2) "
        "for torch; a Hugging Face model directory (config.json, weights, tokenizer) for vllm; "
        "relative paths resolve against the graph file's folder, then the cwd.",
    )
    model_class: Any = Field(
        None,
        description="Import path (or object) of an nn.Module factory for torch, or of the "
        "callable class for python.",
    )
    state_dict: str | None = Field(
        None, description="torch only: a state dict file loaded into model_class's module."
    )
    init_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for model_class."
    )
    input_names: list[str] | None = Field(
        None, description="Payload keys passed to the model, in order (default: all keys)."
    )
    output_names: list[str] | None = Field(
        None, description="Names given to the model's outputs (default: the model's own names)."
    )
    intra_op_threads: int | None = Field(
        None, ge=1, description="Threads per inference (default: the node's CPUs, at least 1)."
    )
    batching: BatchingSpec | None = Field(None, description="Dynamic batching; off when omitted.")
    postprocess: Any = Field(
        None, description="Import path (or callable) applied to the outputs inside the replica."
    )
    engine: EngineSettings | None = Field(
        None, description="vllm only: engine settings (dtype, max_model_len, parallelism...)."
    )

    @model_validator(mode="after")
    def _runtime_fields(self) -> ModelNode:
        if self.runtime == "onnx" and not self.model_path:
            raise ValueError("runtime 'onnx' needs model_path (an .onnx file)")
        if self.runtime == "torch" and not (self.model_path or self.model_class):
            raise ValueError("runtime 'torch' needs model_path or model_class")
        if self.runtime == "python" and not self.model_class:
            raise ValueError("runtime 'python' needs model_class (import path of a callable class)")
        if self.state_dict and not self.model_class:
            raise ValueError("state_dict needs model_class to build the module it loads into")
        if self.runtime == "vllm":
            self._check_vllm()
        elif self.engine is not None:
            raise ValueError("engine settings apply to runtime 'vllm' only")
        return self

    def _check_vllm(self) -> None:
        if not self.model_path:
            raise ValueError(
                "runtime 'vllm' needs model_path (a Hugging Face model directory with config.json)"
            )
        if self.batching is not None:
            raise ValueError("runtime 'vllm' batches continuously in the engine; remove batching")
        engine = self.engine or EngineSettings()
        tp = engine.tensor_parallel_size
        if tp > 1 and self.num_gpus != tp:
            raise ValueError(
                f"engine.tensor_parallel_size {tp} needs num_gpus: {tp} on the node "
                f"(got num_gpus {self.num_gpus})"
            )
        share = engine.gpu_memory_utilization
        if share is not None and 0 < self.num_gpus < 1 and share > self.num_gpus:
            raise ValueError(
                f"engine.gpu_memory_utilization {share} is more than the node's "
                f"num_gpus {self.num_gpus}: replicas sharing the GPU would not fit; "
                f"use at most {self.num_gpus}"
            )


#: Combiners an ensemble names by word (anything else is an import path).
BUILTIN_COMBINERS = ("mean", "weighted_mean", "vote")


class EnsembleNode(NodeBase):
    """Calls every member concurrently and combines their outputs."""

    kind: Literal["ensemble"] = Field(description="Node kind.")
    members: list[Ref] = Field(min_length=1, description="Nodes or chains called concurrently.")
    combiner: str | Any = Field(
        "mean",
        description="'mean', 'weighted_mean', 'vote', or an import path (or callable) taking "
        "(outputs: list[dict], weights: list[float]) and returning a dict.",
    )
    weights: list[float] | None = Field(
        None, description="Member weights for weighted_mean/vote (default: equal)."
    )
    outputs: list[str] | None = Field(
        None, description="Output names to combine (default: those every answering member has)."
    )
    quorum: int | None = Field(
        None, ge=1, description="Members that must answer in time (default: all)."
    )
    timeout_s: float = Field(  # type: ignore[assignment]
        10.0, gt=0, description="How long to wait for members; late members are left out."
    )
    fallback: Ref | None = Field(
        None,
        description="Node or chain that answers instead when too few members answer in time "
        "(failed, timed out, or shed by their breakers).",
    )
    postprocess: Any = Field(
        None, description="Import path (or callable) applied to the combined outputs."
    )

    @model_validator(mode="after")
    def _members_consistent(self) -> EnsembleNode:
        n = len(self.members)
        if self.weights is not None:
            if len(self.weights) != n:
                raise ValueError(f"weights has {len(self.weights)} entries for {n} members")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError(f"weights must be >= 0 with a positive sum, got {self.weights}")
        if self.quorum is not None and self.quorum > n:
            raise ValueError(f"quorum {self.quorum} is larger than the {n} members")
        if self.combiner == "weighted_mean" and self.weights is None:
            raise ValueError("combiner 'weighted_mean' needs weights, one per member")
        return self

    def children(self) -> list[str]:
        fallback = refs(self.fallback) if self.fallback is not None else []
        return list(dict.fromkeys([n for m in self.members for n in refs(m)] + fallback))

    def calls(self) -> list[tuple[list[str], float]]:
        return [(refs(m), 1.0) for m in self.members]
