"""The digits demo: scikit-learn's bundled handwritten digits (1,797 8x8 images, no download).

``python -m graphs.examples.digits train`` trains, deterministically and in seconds, a logistic
regression exported to ONNX, a small torch network saved as TorchScript, and a deliberately weak
logistic regression (60 training images; the bandit demo's worse arm) into
``artifacts/digits/``; the graph ``graphs/examples/digits.yaml`` serves the first two.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

from graphs.validate import PACKAGE_ROOT

ARTIFACTS = os.path.join("artifacts", "digits")
CLASSES = 10
WEAK_TRAIN_IMAGES = 60


def scale_pixels(payload: dict[str, Any]) -> dict[str, Any]:
    """Preprocess node: pixel values 0-16 (as ``load_digits`` gives them) scaled to 0-1."""
    return {"input": np.asarray(payload["input"], dtype=np.float32) / 16.0}


def add_label(outputs: dict[str, Any]) -> dict[str, Any]:
    """Postprocess: the predicted label is the most probable class."""
    probs = np.asarray(outputs["probabilities"], dtype=np.float32)
    return {"probabilities": probs, "label": probs.argmax(axis=-1).astype(np.int64)}


def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The fixed train/held-out split: ``(x_train, x_test, y_train, y_test)``, pixels 0-16."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x.astype(np.float32), y, test_size=0.25, random_state=0, stratify=y
    )
    return x_train, x_test, y_train, y_test


def train(out_dir: str = ARTIFACTS, seed: int = 0) -> dict[str, float]:
    """Train both models into ``out_dir``; returns their held-out accuracies."""
    import torch
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    os.makedirs(out_dir, exist_ok=True)
    x_train, x_test, y_train, y_test = split()
    xs_train, xs_test = x_train / 16.0, x_test / 16.0

    def logistic_regression(images: int, name: str) -> Any:
        model = LogisticRegression(max_iter=2000, C=0.5).fit(xs_train[:images], y_train[:images])
        onx = to_onnx(
            model,
            xs_train[:1],
            options={id(model): {"zipmap": False}},
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(onx.SerializeToString())
        return model

    logreg = logistic_regression(len(xs_train), "logreg.onnx")
    # A deliberately weak model (the same logistic regression fit on the first 60 images only,
    # about 78 % accurate): the bandit demo's clearly worse arm.
    weak = logistic_regression(WEAK_TRAIN_IMAGES, "weak.onnx")

    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, CLASSES)
    )
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(xs_train), torch.from_numpy(y_train).long()
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(xt), yt)
        loss.backward()
        opt.step()
    model = torch.nn.Sequential(net, torch.nn.Softmax(dim=-1)).eval()
    torch.jit.save(torch.jit.script(model), os.path.join(out_dir, "mlp.pt"))
    np.savez(os.path.join(out_dir, "test.npz"), x=x_test, y=y_test)

    with torch.inference_mode():
        mlp_acc = float((model(torch.from_numpy(xs_test)).argmax(-1).numpy() == y_test).mean())
    return {
        "logreg": float(logreg.score(xs_test, y_test)),
        "mlp": mlp_acc,
        "weak": float(weak.score(xs_test, y_test)),
    }


#: The drift reference shipped with the digits graphs (``observe.drift.reference``): the
#: training images (pixels 0-16 as uint8) and their labels, written by :func:`write_reference`.
REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits_reference.npz")


def write_reference(path: str = REFERENCE) -> str:
    """Save the training split as the drift reference: ``input`` (the pixels) and ``label``."""
    x_train, _, y_train, _ = split()
    np.savez_compressed(path, input=x_train.astype(np.uint8), label=y_train.astype(np.int64))
    return path


def ensure_trained(out_dir: str | None = None) -> str:
    """Train the models unless they are already in ``out_dir`` (default: the repo artifacts)."""
    out_dir = out_dir or os.path.join(PACKAGE_ROOT, ARTIFACTS)
    names = ("logreg.onnx", "weak.onnx", "mlp.pt", "test.npz")
    if not all(os.path.exists(os.path.join(out_dir, n)) for n in names):
        train(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["train", "reference"])
    parser.add_argument("--out", default=os.path.join(PACKAGE_ROOT, ARTIFACTS))
    args = parser.parse_args(argv)
    if args.command == "reference":
        print(json.dumps({"reference": write_reference()}))
        return 0
    print(json.dumps({"artifacts": args.out, "held_out_accuracy": train(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
