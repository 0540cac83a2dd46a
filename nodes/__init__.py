"""Node kinds that run inside a graph's deployments: preprocess, model runtimes (LLMs on vLLM
included), ensembles."""

from nodes.batching import Batcher
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
    "Ensemble",
    "LLMRunner",
    "ModelRunner",
    "Preprocessor",
    "PromptTemplate",
]
