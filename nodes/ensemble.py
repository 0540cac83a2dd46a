"""Ensemble node: call every member concurrently, wait up to a timeout, combine a quorum."""

from __future__ import annotations

import asyncio
from typing import Any

from nodes.calls import ChainRunner, Payload, Result, log, merge_notes, public_error
from nodes.combiners import BUILTIN, Combiner
from nodes.errors import QuorumError
from nodes.imports import resolve
from nodes.spec import EnsembleNode, refs


class Ensemble:
    """Runs an ensemble node: calls its members' chains through ``runner`` and combines."""

    def __init__(self, spec: EnsembleNode, runner: ChainRunner):
        self.spec = spec
        self._runner = runner
        self._chains = [refs(m) for m in spec.members]
        self._labels = ["->".join(c) for c in self._chains]
        self._weights = list(spec.weights or [1.0] * len(self._chains))
        self._combine: Combiner = (
            BUILTIN[spec.combiner] if spec.combiner in BUILTIN else resolve(spec.combiner)
        )
        self._post = resolve(spec.postprocess) if spec.postprocess is not None else None
        self._quorum = spec.quorum or len(self._chains)

    async def __call__(self, payload: Payload, ctx: dict[str, Any]) -> Result:
        tasks = [
            asyncio.ensure_future(self._runner.call(chain, payload, ctx)) for chain in self._chains
        ]
        _, pending = await asyncio.wait(tasks, timeout=self.spec.timeout_s)
        for task in pending:
            task.cancel()
        answered, failed, late = [], {}, []
        for i, task in enumerate(tasks):
            if task in pending:
                late.append(self._labels[i])
            elif (exc := task.exception()) is not None:
                error = public_error(exc, self._labels[i], ctx.get("request_id"))
                failed[self._labels[i]] = f"{type(error).__name__}: {error}"
            else:
                answered.append(i)
        if len(answered) < self._quorum:
            error = QuorumError(
                f"ensemble {self.spec.name!r}: {len(answered)} of {len(tasks)} members answered "
                f"within {self.spec.timeout_s}s, quorum is {self._quorum} "
                f"(timed out: {late}, failed: {failed})",
                node=self.spec.name,
            )
            log.warning(
                "request %s: %s (error id %s)", ctx.get("request_id"), error, error.error_id
            )
            raise error
        results = [tasks[i].result() for i in answered]
        outputs = [r[0] for r in results]
        keep = self.spec.outputs
        if keep:
            outputs = [{k: o[k] for k in keep if k in o} for o in outputs]
        combined = self._combine(outputs, [self._weights[i] for i in answered])
        if self._post is not None:
            combined = self._post(combined)
        served = [name for r in results for name in r[1]]
        notes: dict[str, Any] = {}
        for r in results:
            merge_notes(notes, r[2])
        if late or failed:
            notes[self.spec.name] = {
                "answered": [self._labels[i] for i in answered],
                "timed_out": late,
                "failed": failed,
            }
        return combined, served, notes
