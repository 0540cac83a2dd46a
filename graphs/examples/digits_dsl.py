"""The digits graph declared in Python: the same spec as ``digits.yaml``.

``serve run graphs.examples.digits_dsl:app`` serves it; ``serve build graphs.examples.digits_dsl:app
-o config.yaml`` writes a Serve config for it.
"""

from __future__ import annotations

from graphs import Graph, tensor

IMAGES = tensor("input", "FP32", [-1, 64])
ADD_LABEL = "graphs.examples.digits:add_label"
BATCHING = {"max_batch_size": 32, "max_wait_ms": 2}


def build_graph() -> Graph:
    """The digits graph: scale pixels, then split between two models and their ensemble."""
    g = Graph(
        "digits",
        description="Handwritten digits (scikit-learn's load_digits), two models and their "
        "ensemble.",
        inputs=[IMAGES],
        outputs=[tensor("probabilities", "FP32", [-1, 10]), tensor("label", "INT64", [-1])],
    )
    scale = g.preprocess("graphs.examples.digits:scale_pixels", name="scale")
    logreg = g.model(
        "logreg",
        runtime="onnx",
        model_path="artifacts/digits/logreg.onnx",
        output_names=["label", "probabilities"],
        postprocess=ADD_LABEL,
        batching=BATCHING,
    )
    mlp = g.model(
        "mlp",
        runtime="torch",
        model_path="artifacts/digits/mlp.pt",
        output_names=["probabilities"],
        postprocess=ADD_LABEL,
        batching=BATCHING,
    )
    both = g.ensemble(
        "both",
        members=[logreg, mlp],
        combiner="mean",
        outputs=["probabilities"],
        timeout_s=5,
        postprocess=ADD_LABEL,
    )
    split = g.router("split", {logreg: 0.25, mlp: 0.25, both: 0.5}, seed=0)
    g.entry = scale >> split
    return g


def __getattr__(name: str) -> object:
    # Built on first access, so importing this module does not require the trained models.
    if name == "app":
        return build_graph().build()
    raise AttributeError(name)
