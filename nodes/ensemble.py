"""Ensemble node: call every member concurrently, wait up to a timeout, combine a quorum.

Each member may have a circuit breaker (the ensemble's ``breaker:``): an open one leaves its
member out without calling it. When too few members answer, the ensemble's ``fallback:``
answers instead, or the request fails with 504 naming the ensemble. Members still running when
the ensemble gives up on them, or when its own caller goes away, are cancelled.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nodes.breaker import CircuitBreaker
from nodes.calls import ChainRunner, Payload, Result, log, merge_notes, public_error
from nodes.combiners import BUILTIN, Combiner
from nodes.errors import QuorumError
from nodes.imports import resolve
from nodes.resilience import counts_as_failure, remaining_s
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
        self._fallback = refs(spec.fallback) if spec.fallback is not None else None
        self.breakers = [
            CircuitBreaker(spec.breaker) if spec.breaker is not None else None for _ in self._chains
        ]
        self.fallbacks = 0

    async def __call__(self, payload: Payload, ctx: dict[str, Any]) -> Result:
        admitted = [b is None or b.allow() for b in self.breakers]
        tasks = {
            i: asyncio.ensure_future(self._runner.call(chain, payload, ctx))
            for i, chain in enumerate(self._chains)
            if admitted[i]
        }
        wait = min(self.spec.timeout_s, max(0.0, remaining_s(ctx, time.time())))
        try:
            if tasks:
                _, pending = await asyncio.wait(tasks.values(), timeout=wait)
            else:
                pending = set()
        finally:  # also when our caller went away: nobody waits for the members any more
            for task in tasks.values():
                if not task.done():
                    task.cancel()
        answered: list[int] = []
        failed: dict[str, str] = {}
        late: list[str] = []
        shed: list[str] = []
        for i, label in enumerate(self._labels):
            if i not in tasks:
                shed.append(label)
                continue
            task = tasks[i]
            if task in pending or task.cancelled():
                late.append(label)
                self._outcome(i, False)
            elif (exc := task.exception()) is not None:
                self._outcome(i, False if counts_as_failure(exc) else None)
                error = public_error(exc, label, ctx.get("request_id"))
                failed[label] = f"{type(error).__name__}: {error}"
            else:
                self._outcome(i, True)
                answered.append(i)
        if len(answered) < self._quorum:
            return await self._missed(payload, ctx, len(answered), late, failed, shed)
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
        if late or failed or shed:
            notes[self.spec.name] = {
                "answered": [self._labels[i] for i in answered],
                "timed_out": late,
                "failed": failed,
                **({"shed": shed} if shed else {}),
            }
        return combined, served, notes

    def _outcome(self, member: int, ok: bool | None) -> None:
        """Tell a member's breaker how its call ended (None: cancelled, neither)."""
        breaker = self.breakers[member]
        if breaker is not None:
            breaker.release() if ok is None else breaker.record(ok)

    async def _missed(
        self,
        payload: Payload,
        ctx: dict[str, Any],
        answered: int,
        late: list[str],
        failed: dict[str, str],
        shed: list[str],
    ) -> Result:
        """Too few members answered: the fallback answers, or 504 naming the ensemble."""
        what = f"timed out: {late}, failed: {failed}" + (
            f", shed by breakers: {shed}" if shed else ""
        )
        if self._fallback is not None and remaining_s(ctx, time.time()) > 0:
            self.fallbacks += 1
            out, served, notes = await self._runner.call(self._fallback, payload, ctx)
            note = {"fallback": f"{answered} of {len(self._chains)} members answered ({what})"}
            return out, served, {**notes, self.spec.name: note}
        error = QuorumError(
            f"ensemble {self.spec.name!r}: {answered} of {len(self._chains)} members answered "
            f"within {self.spec.timeout_s}s, quorum is {self._quorum} ({what})",
            node=self.spec.name,
        )
        log.warning("request %s: %s (error id %s)", ctx.get("request_id"), error, error.error_id)
        raise error

    def breaker_states(self) -> dict[str, Any]:
        """Member breakers and fallback count, for ``/graph``."""
        out: dict[str, Any] = {}
        if any(b is not None for b in self.breakers):
            out["breakers"] = {
                label: b.to_dict() for label, b in zip(self._labels, self.breakers) if b is not None
            }
        if self._fallback is not None:
            out["fallback"] = {"target": self._fallback, "served": self.fallbacks}
        return out
