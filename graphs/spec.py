"""The graph spec: frozen pydantic v2 models that both front doors (Python DSL and YAML) produce.

Field-level rules (types, ranges, GPU fractions, weights) live on the fields here; rules that need
the whole graph (references, cycles, imports, files) live in :mod:`graphs.validate`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from autoscale.settings import ScalingSettings
from routing.ab import ABConfig
from routing.bandits.config import BanditConfig
from routing.canary import CanaryConfig
from routing.shadow import ShadowConfig


#: A reference to what a router arm or ensemble member runs: one node name, or a chain of names
#: called in turn (each node's output is the next one's input).
def _check_ref(value: Any) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"must be a node name or a non-empty list of node names, got {value!r}")


Ref = Annotated[
    str | list[str],
    PlainValidator(_check_ref),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ]
        }
    ),
]

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"
#: Deployment name of every graph's HTTP ingress; no node may take it.
INGRESS_NAME = "ingress"
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


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    def __repr__(self) -> str:
        # Show what the object was built from, without the defaults, so reprs stay readable.
        fields = self.model_dump(exclude_defaults=True)
        inner = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        return f"{type(self).__name__}({inner})"


def refs(ref: Ref) -> list[str]:
    """The node names a reference calls, in call order."""
    return [ref] if isinstance(ref, str) else list(ref)


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


class TensorSpec(_Frozen):
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


class BatchingSpec(_Frozen):
    """Dynamic batching of one model node, built on ``serve.batch``."""

    max_batch_size: int = Field(32, ge=1, le=4096, description="Most requests merged per batch.")
    max_wait_ms: float = Field(
        5.0, ge=0, le=10_000, description="Longest a request waits for its batch to fill (ms)."
    )


class DeploymentOptions(_Frozen):
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

    _check_gpus = field_validator("num_gpus")(check_gpus)


class _NodeBase(DeploymentOptions):
    name: str = Field(
        pattern=NAME_PATTERN, description="Unique node name; also its deployment name."
    )
    autoscaling: ScalingSettings | None = Field(
        None,
        description="Scale this node with servegraph's policy (latency SLO, queue target, "
        "cooldowns); replaces num_replicas and autoscaling_config.",
    )

    @model_validator(mode="after")
    def _one_way_to_size(self) -> _NodeBase:
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


class PreprocessNode(_NodeBase):
    """Transforms a payload: a function or class named by import path, or a Python object."""

    kind: Literal["preprocess"] = Field(description="Node kind.")
    function: Any = Field(
        description="Import path 'pkg.module:attr' (or a Python callable) taking and returning "
        "a payload dict; sync or async. A class is instantiated once with init_kwargs."
    )
    init_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for a class's constructor."
    )


class EngineSettings(_Frozen):
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


class ModelNode(_NodeBase):
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


class Arm(_Frozen):
    """One arm of a router: what it runs and its share of traffic."""

    target: Ref = Field(description="Node name or chain of node names this arm runs.")
    weight: float | None = Field(
        None,
        ge=0,
        description="Share of traffic; the arms' weights sum to 1. Omit on every arm for an "
        "equal split; canary and bandit routers set the split themselves.",
    )
    name: str | None = Field(
        None,
        pattern=NAME_PATTERN,
        description="Arm name in reports, metrics and the canary history (default: its target, "
        "a chain joined by '->').",
    )

    @property
    def label(self) -> str:
        """The arm's name: ``name`` if given, else its target."""
        return self.name or "->".join(refs(self.target))


class ShadowSpec(ShadowConfig):
    """Mirror requests to a shadow target; the client gets the primary arm's result only."""

    target: Ref = Field(description="Node name or chain of node names that gets the mirror.")
    timeout_s: float = Field(
        10.0, gt=0, description="A shadow call still running after this long is abandoned."
    )


class RouterStateSpec(_Frozen):
    """How a router's replicas share state: one authoritative holder, synced in batches."""

    sync_interval_s: float = Field(
        0.5, gt=0, le=60, description="Longest a replica keeps its figures before syncing."
    )
    sync_events: int = Field(
        256, ge=1, description="Requests after which a replica syncs early (batched sync)."
    )
    snapshot_interval_s: float = Field(
        5.0,
        gt=0,
        description="How often the state holder writes a full JSON snapshot; every change in "
        "between goes to an append-only log first, so a restart loses nothing.",
    )
    dir: str | None = Field(
        None,
        description="Where snapshots live (default $SERVEGRAPH_STATE_DIR, else "
        "~/.servegraph/state); use a shared filesystem on multi-node clusters.",
    )


#: Router policies: at most one of these sections; none is a weighted split.
ROUTER_POLICIES = ("ab", "canary", "bandit")


class RouterNode(_NodeBase):
    """Sends each request to one arm: weighted, sticky A/B, canary or bandit; optional shadow."""

    kind: Literal["router"] = Field(description="Node kind.")
    arms: list[Arm] = Field(min_length=1, description="Arms and their weights.")
    seed: int | None = Field(None, description="RNG seed for reproducible splits.")
    ab: ABConfig | None = Field(
        None, description="Sticky A/B: requests with the same key always get the same arm."
    )
    canary: CanaryConfig | None = Field(
        None,
        description="Canary rollout over two arms (stable first, then candidate), gated on "
        "errors, latency and reward.",
    )
    bandit: BanditConfig | None = Field(
        None,
        description="Multi-armed bandit learning from rewards posted to /feedback "
        "(algorithm defaults to thompson_beta).",
    )
    shadow: ShadowSpec | None = Field(
        None, description="Mirror a share of requests to a shadow target and compare outputs."
    )
    state: RouterStateSpec = Field(
        default_factory=lambda: RouterStateSpec(),
        description="How the router's replicas share state and snapshot it.",
    )
    user_config: dict[str, Any] | None = Field(
        None,
        description="Serve user_config of the router's deployment: {weights: [...]} changes a "
        "weighted or A/B split on redeploy without restarting replicas.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_bandit(cls, data: Any) -> Any:
        # Thompson sampling is the default bandit: best regret, and robust to batched sync.
        bandit = data.get("bandit") if isinstance(data, dict) else None
        if isinstance(bandit, dict) and "algorithm" not in bandit:
            data = {**data, "bandit": {"algorithm": "thompson_beta", **bandit}}
        return data

    @field_validator("arms")
    @classmethod
    def _weights_sum_to_one(cls, arms: list[Arm]) -> list[Arm]:
        given = [a.weight for a in arms if a.weight is not None]
        if given and len(given) != len(arms):
            raise ValueError("give a weight on every arm or on none (none: an equal split)")
        total = sum(given)
        if given and not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"weights must sum to 1, got {round(total, 6)}")
        labels = [a.label for a in arms]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"arm names must be unique; give arms a name ({dupes} repeat)")
        return arms

    @model_validator(mode="after")
    def _one_policy(self) -> RouterNode:
        chosen = [p for p in ROUTER_POLICIES if getattr(self, p) is not None]
        if len(chosen) > 1:
            raise ValueError(f"give at most one of ab, canary, bandit; got {', '.join(chosen)}")
        weighted = self.arms[0].weight is not None
        if self.canary is not None:
            if len(self.arms) != 2:
                raise ValueError(
                    f"a canary needs exactly 2 arms (stable, then candidate), got {len(self.arms)}"
                )
            if weighted:
                raise ValueError("canary arms take no weight: the ramp's steps set the split")
        if self.bandit is not None and weighted:
            raise ValueError("bandit arms take no weight: the bandit sets the split")
        if self.user_config is not None:
            weights = self.user_config.get("weights")
            if set(self.user_config) != {"weights"} or self.policy not in ("weighted", "ab"):
                raise ValueError(
                    "user_config takes {weights: [...]} only, on weighted or ab routers"
                )
            if not isinstance(weights, list) or len(weights) != len(self.arms):
                raise ValueError(f"user_config.weights needs {len(self.arms)} numbers")
        return self

    @property
    def policy(self) -> str:
        """``weighted``, ``ab``, ``canary`` or ``bandit``."""
        return next((p for p in ROUTER_POLICIES if getattr(self, p) is not None), "weighted")

    def weights(self) -> list[float]:
        """The configured split (equal when no arm has a weight)."""
        if self.arms[0].weight is None:
            return [1.0 / len(self.arms)] * len(self.arms)
        return [float(a.weight or 0.0) for a in self.arms]

    def children(self) -> list[str]:
        targets = [arm.target for arm in self.arms]
        if self.shadow is not None:
            targets.append(self.shadow.target)
        return list(dict.fromkeys(n for t in targets for n in refs(t)))


#: Combiners an ensemble names by word (anything else is an import path).
BUILTIN_COMBINERS = ("mean", "weighted_mean", "vote")


class EnsembleNode(_NodeBase):
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
    timeout_s: float = Field(
        10.0, gt=0, description="How long to wait for members; late members are left out."
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
        return [n for m in self.members for n in refs(m)]


Node = Annotated[
    PreprocessNode | ModelNode | RouterNode | EnsembleNode, Field(discriminator="kind")
]


class GraphSpec(_Frozen):
    """A whole inference graph: its nodes, the flow the ingress runs, and its HTTP contract."""

    name: str = Field(
        pattern=NAME_PATTERN, description="Graph name: route prefix /<name> and OIP model name."
    )
    description: str = Field("", description="Shown in /graph and the OpenAPI docs.")
    version: str = Field("1", description="Model version reported over OIP.")
    inputs: list[TensorSpec] = Field(
        min_length=1, description="Input tensors requests must carry (OIP metadata)."
    )
    outputs: list[TensorSpec] = Field(
        default_factory=list, description="Output tensors the graph returns (OIP metadata)."
    )
    nodes: list[Node] = Field(min_length=1, description="Every node of the graph.")
    entry: Ref = Field(description="Node name or chain the ingress calls for each request.")
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Largest request body accepted; larger gets 413."
    )
    feedback_ttl_s: float = Field(
        86_400.0,
        gt=0,
        description="How long a response's feedback token is accepted by POST /<graph>/feedback.",
    )
    ingress: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(),
        description="Deployment options of the HTTP ingress (its deployment is named 'ingress').",
    )

    def node(self, name: str) -> PreprocessNode | ModelNode | RouterNode | EnsembleNode:
        """The node called ``name``; KeyError when there is none."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def edges(self) -> Iterator[dict[str, str]]:
        """Every call edge: chain steps of the entry, router arms and ensemble members."""
        entry = refs(self.entry)
        yield {"from": INGRESS_NAME, "to": entry[0], "kind": "entry"}
        for a, b in itertools.pairwise(entry):
            yield {"from": a, "to": b, "kind": "then"}
        for node in self.nodes:
            targets: list[Ref] = []
            kind = ""
            if isinstance(node, RouterNode):
                targets, kind = [a.target for a in node.arms], "arm"
                if node.shadow is not None:
                    chain = refs(node.shadow.target)
                    yield {"from": node.name, "to": chain[0], "kind": "shadow"}
                    for a, b in itertools.pairwise(chain):
                        yield {"from": a, "to": b, "kind": "then"}
            elif isinstance(node, EnsembleNode):
                targets, kind = list(node.members), "member"
            for target in targets:
                chain = refs(target)
                yield {"from": node.name, "to": chain[0], "kind": kind}
                for a, b in itertools.pairwise(chain):
                    yield {"from": a, "to": b, "kind": "then"}
