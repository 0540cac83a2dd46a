"""Resolve plug-ins named by import path (``pkg.module:attr`` or ``pkg.module.attr``)."""

from __future__ import annotations

import importlib
from typing import Any


def resolve(target: Any) -> Any:
    """The object an import path names; a non-string is returned as it is.

    Raises:
        ImportError: the module does not import (the message carries the import error).
        AttributeError: the module has no such attribute.
        ValueError: the string is not an import path.
    """
    if not isinstance(target, str):
        return target
    if ":" in target:
        module_name, _, attr = target.partition(":")
    else:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{target!r} is not an import path; write 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any failure while importing user code is an import failure here
        raise ImportError(f"cannot import {module_name!r} for {target!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"{module_name!r} has no attribute {attr!r} (from {target!r})")
        obj = getattr(obj, part)
    return obj
