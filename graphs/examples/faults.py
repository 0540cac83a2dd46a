"""Models that fail on purpose, for the failure tests and ``loadtests/chaos.py``.

:class:`Switchable` behaves as a file says, read on every call, so a test or a chaos scenario
can make a running model hang, fail or die without redeploying it. Faults are injected here
only: everything around them (handles, replicas, routers) is the real thing.
"""

from __future__ import annotations

import os
import time
from typing import Any

__all__ = ["DieOnce", "Switchable"]


class Switchable:
    """Returns its input unchanged, or, as ``control_path`` says (its first word; a missing or
    empty file is ``ok``): ``hang`` (sleeps until the file says otherwise), ``fail`` (raises),
    ``die`` (ends its replica's process at once), ``slow <seconds>`` (sleeps, then answers).

    Args:
        control_path: the file to read.
        tag: added to the output as ``served`` (tells which of several nodes answered).
    """

    def __init__(self, control_path: str, tag: str = ""):
        self.control_path = control_path
        self.tag = tag

    def _mode(self) -> list[str]:
        try:
            with open(self.control_path) as f:
                return f.read().split() or ["ok"]
        except FileNotFoundError:
            return ["ok"]

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        mode = self._mode()
        while mode[0] == "hang":
            time.sleep(0.05)
            mode = self._mode()
        if mode[0] == "fail":
            raise RuntimeError(f"{self.tag or 'model'}: failing on purpose")
        if mode[0] == "die":
            os._exit(1)
        if mode[0] == "slow":
            time.sleep(float(mode[1]))
        return {**payload, **({"served": [self.tag]} if self.tag else {})}


class DieOnce:
    """Ends its replica's process on the first call any replica gets (``marker_path`` is created
    atomically by that call), answers normally afterwards: a replica lost mid-request."""

    def __init__(self, marker_path: str):
        self.marker_path = marker_path

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            fd = os.open(self.marker_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return payload
        os.close(fd)
        os._exit(1)
