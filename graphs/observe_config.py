"""Build-time checks of a graph's ``observe:`` block: its paths resolved, its reference read.

Called by :func:`graphs.validate.parse_graph`; each problem names its config path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

from graphs.spec import GraphSpec
from nodes.drift import load_reference
from nodes.observe_spec import ObserveSpec

__all__ = ["check_observe", "observe_paths"]


def observe_paths(
    observe: ObserveSpec | None, base_dir: str | None, resolve: Callable[[str, str | None], str]
) -> ObserveSpec | None:
    """``observe`` with its reference resolved like model paths (``resolve``) and its log
    folder made absolute (against ``base_dir``, else the cwd: it need not exist yet)."""
    if observe is None:
        return None
    drift, log = observe.drift, observe.log
    if drift is not None and isinstance(drift.reference, str):
        drift = drift.model_copy(update={"reference": resolve(drift.reference, base_dir)})
    if log is not None and log.path is not None and not os.path.isabs(log.path):
        folder = os.path.abspath(os.path.join(base_dir or os.getcwd(), log.path))
        log = log.model_copy(update={"path": folder})
    return observe.model_copy(update={"drift": drift, "log": log})


def check_observe(spec: GraphSpec, prefix: str, check_files: bool) -> list[tuple[str, str]]:
    """Drift needs numeric tensors, and a reference file that holds every input with as many
    features per row as the input's shape says."""
    drift = spec.observe.drift if spec.observe is not None else None
    if drift is None:
        return []
    where = f"{prefix}.observe.drift"
    text = [t.name for t in (*spec.inputs, *spec.outputs) if t.datatype == "BYTES"]
    if text:
        return [
            (
                where,
                f"drift compares numeric tensors; {text[0]!r} is BYTES. Drop observe.drift "
                "(the inference log works on any graph)",
            )
        ]
    if not check_files or not isinstance(drift.reference, str):
        return []
    try:
        reference = load_reference(drift.reference, [t.name for t in spec.inputs])
    except ValueError as exc:
        return [(f"{where}.reference", str(exc))]
    issues = []
    for tensor in (*spec.inputs, *spec.outputs):
        dims = tensor.shape[1:]
        if tensor.name in reference and dims and all(d > 0 for d in dims):
            want, got = math.prod(dims), reference[tensor.name].shape[1]
            if want != got:
                issues.append(
                    (
                        f"{where}.reference",
                        f"{tensor.name!r} has {got} features per row in the reference, but the "
                        f"graph's shape {tensor.shape} says {want}",
                    )
                )
    return issues
