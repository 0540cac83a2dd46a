"""The digits graph's peer: the plain single-process FastAPI service a user would write instead.

What ``graphs/examples/digits.yaml`` serves, written by hand in one FastAPI app and one process,
without Ray or servegraph, from the same artifacts (``artifacts/digits/``, trained by
``python -m graphs.examples.digits train``):

- scale: pixel values 0-16 as float32, divided by 16 (``graphs.examples.digits:scale_pixels``);
- split: a weighted random draw, logreg 0.25 / mlp 0.25 / both 0.5, from ``random.Random(0)``
  (the router's ``seed: 0``), by cumulative weights as ``routing.weighted.WeightedRandom`` draws;
- logreg: an ONNX Runtime session on the CPU provider with ``intra_op_num_threads=1`` and
  ``inter_op_num_threads=1``, what ``nodes.runtimes.load_onnx`` gives a node reserving under
  one CPU (every digits model node does);
- mlp: the TorchScript model in inference mode with ``torch.set_num_threads(1)``
  (``nodes.runtimes.load_torch``, same rule);
- both: the element-wise mean of the two models' probabilities (``combiner: mean``: float64,
  then back to float32); every answer's label is the argmax of its probabilities (``add_label``).

``POST /digits/predict`` takes the graph's body (``{"inputs": {"input": [[64 floats], ...]}}``,
or the bare tensor) and answers the graph's shape: ``request_id`` (also in ``X-Request-Id``, kept
when the caller sends one), ``outputs`` (``probabilities``, ``label``), ``served_by`` (the same
node names: ``scale``, ``split``, then the arm) and ``notes``. Bad input is a 422. There is no
batching and no feedback token (the peer has no ``/feedback``). The endpoint is a plain ``def``:
FastAPI runs it in its thread pool, as it runs every synchronous endpoint, so inference never
blocks the event loop; uvicorn runs one process, its access log off.

    python loadtests/peer_fastapi.py --port 18765      # serves http://127.0.0.1:18765/digits

``make_app()`` builds the app for an importer (``bench_fusion.py`` starts this file as a
subprocess on a free port of its own).
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import os
import random
import sys
import uuid
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Header, HTTPException, Response
from pydantic import BaseModel, ConfigDict

HOST = "127.0.0.1"
PREFIX = "/digits"
ARTIFACTS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "artifacts", "digits"
)
#: The router's arms and weights (``graphs/examples/digits.yaml``), and its seed.
ARMS = (("logreg", 0.25), ("mlp", 0.25), ("both", 0.5))
SEED = 0
#: Intra-op threads of each model: what the graph's model nodes get (num_cpus < 1: one thread).
THREADS = 1
PIXELS = 64
#: ``served_by`` of each arm, as the graph reports it.
SERVED_BY = {
    "logreg": ["scale", "split", "logreg"],
    "mlp": ["scale", "split", "mlp"],
    "both": ["scale", "split", "both", "logreg", "mlp"],
}


class PredictRequest(BaseModel):
    """The graph's ``/predict`` body: the input by name, or the bare tensor."""

    model_config = ConfigDict(extra="forbid")
    inputs: dict[str, list[list[float]]] | list[list[float]]
    parameters: dict[str, Any] | None = None


class Digits:
    """Both models, loaded once; the split and the ensemble."""

    def __init__(self, artifacts: str = ARTIFACTS, seed: int = SEED):
        import onnxruntime as ort
        import torch

        missing = [
            n for n in ("logreg.onnx", "mlp.pt") if not os.path.exists(os.path.join(artifacts, n))
        ]
        if missing:
            raise FileNotFoundError(
                f"{missing} not in {artifacts}: run `python -m graphs.examples.digits train`"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = THREADS
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.path.join(artifacts, "logreg.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        torch.set_num_threads(THREADS)
        self.torch = torch
        self.mlp = torch.jit.load(os.path.join(artifacts, "mlp.pt"), map_location="cpu").eval()
        self.rng = random.Random(seed)
        total = sum(w for _, w in ARMS)
        self.cumulative = list(itertools.accumulate(w / total for _, w in ARMS))

    def choose(self) -> str:
        """The arm for the next request."""
        x = self.rng.random() * self.cumulative[-1]
        return ARMS[min(bisect.bisect_right(self.cumulative, x), len(ARMS) - 1)][0]

    def logreg_probs(self, x: np.ndarray) -> np.ndarray:
        _label, probs = self.session.run(["label", "probabilities"], {self.input_name: x})
        return np.asarray(probs, dtype=np.float32)

    def mlp_probs(self, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return np.asarray(self.mlp(self.torch.from_numpy(x)).numpy(), dtype=np.float32)

    def predict(self, pixels: np.ndarray) -> tuple[np.ndarray, str]:
        """Probabilities for ``pixels`` (rows of 64 values 0-16) and the arm that served."""
        x = pixels / 16.0
        arm = self.choose()
        if arm == "logreg":
            return self.logreg_probs(x), arm
        if arm == "mlp":
            return self.mlp_probs(x), arm
        stacked = np.stack([self.logreg_probs(x), self.mlp_probs(x)]).astype(np.float64)
        return stacked.mean(axis=0).astype(np.float32), arm


def unprocessable(field: str, msg: str) -> HTTPException:
    return HTTPException(422, detail=[{"loc": ["body", "inputs", field], "msg": msg}])


def make_app(artifacts: str = ARTIFACTS, seed: int = SEED) -> FastAPI:
    """The peer's FastAPI app, models loaded."""
    digits = Digits(artifacts, seed)
    app = FastAPI(title="digits: the FastAPI peer of the digits graph")

    @app.post(f"{PREFIX}/predict")
    def predict(
        body: PredictRequest,
        response: Response,
        x_request_id: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Scale, split, run the chosen model(s); the graph's answer shape."""
        rows = body.inputs.get("input") if isinstance(body.inputs, dict) else body.inputs
        if rows is None:
            raise unprocessable("input", "required input is missing")
        try:
            pixels = np.asarray(rows, dtype=np.float32)
        except ValueError as exc:
            raise unprocessable("input", f"not a tensor: {exc}") from None
        if pixels.ndim != 2 or pixels.shape[1] != PIXELS:
            raise unprocessable("input", f"expected shape [-1, 64], got {list(pixels.shape)}")
        if not np.isfinite(pixels).all():
            raise unprocessable("input", "NaN or Infinity in the input")
        probs, arm = digits.predict(pixels)
        request_id = x_request_id or str(uuid.uuid4())
        response.headers["X-Request-Id"] = request_id
        return {
            "request_id": request_id,
            "outputs": {
                "probabilities": probs.tolist(),
                "label": probs.argmax(axis=-1).astype(np.int64).tolist(),
            },
            "served_by": SERVED_BY[arm],
            "notes": {},
        }

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--artifacts", default=ARTIFACTS, help="the trained digits models")
    args = parser.parse_args(argv)
    import uvicorn

    app = make_app(args.artifacts)
    uvicorn.run(app, host=HOST, port=args.port, access_log=False, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
