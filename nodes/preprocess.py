"""Preprocess node: a user function or class that turns one payload into another."""

from __future__ import annotations

import inspect
from typing import Any

from nodes.calls import Payload, Result
from nodes.imports import resolve
from nodes.spec import PreprocessNode


class Preprocessor:
    """Runs a preprocess node's callable; a class is instantiated once with ``init_kwargs``."""

    def __init__(self, spec: PreprocessNode):
        target = resolve(spec.function)
        self._fn: Any = target(**spec.init_kwargs) if inspect.isclass(target) else target
        self._is_async = inspect.iscoroutinefunction(self._fn) or inspect.iscoroutinefunction(
            type(self._fn).__call__
        )

    async def __call__(self, payload: Payload, ctx: dict[str, Any]) -> Result:
        out = self._fn(payload)
        if self._is_async or inspect.isawaitable(out):
            out = await out
        if not isinstance(out, dict):
            raise TypeError(f"preprocess must return a dict payload, got {type(out).__name__}")
        return out, [], {}
