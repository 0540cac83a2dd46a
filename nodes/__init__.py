"""Node kinds that run inside a graph's deployments: preprocess, model runtimes (LLMs on vLLM
included), ensembles. Their settings are in :mod:`nodes.spec`; routers and ensembles call other
nodes through a :class:`ChainRunner` the runtime gives them."""

from nodes.batching import Batcher
from nodes.calls import ChainRunner
from nodes.combiners import BUILTIN as COMBINERS
from nodes.ensemble import Ensemble
from nodes.llm import LLMRunner, PromptTemplate
from nodes.model import ModelRunner
from nodes.preprocess import Preprocessor
from nodes.runtimes import LOADERS as RUNTIMES

__all__ = [
    "COMBINERS",
    "RUNTIMES",
    "Batcher",
    "ChainRunner",
    "Ensemble",
    "LLMRunner",
    "ModelRunner",
    "Preprocessor",
    "PromptTemplate",
]
