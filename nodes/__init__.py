"""Node kinds that run inside a graph's deployments: preprocess, model runtimes, ensembles."""

from nodes.batching import Batcher
from nodes.combiners import BUILTIN as COMBINERS
from nodes.ensemble import Ensemble
from nodes.model import ModelRunner
from nodes.preprocess import Preprocessor
from nodes.runtimes import LOADERS as RUNTIMES

__all__ = ["COMBINERS", "RUNTIMES", "Batcher", "Ensemble", "ModelRunner", "Preprocessor"]
