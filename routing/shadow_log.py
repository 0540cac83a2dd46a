"""A bounded log of sampled shadow pairs: JSON lines into rotating files.

:class:`RotatingJsonlWriter` writes JSON lines into a file of at most ``max_bytes``, rotated like
``logging.handlers.RotatingFileHandler`` and never more than ``max_files`` files.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from routing.config import SampleLogConfig

__all__ = ["RotatingJsonlWriter"]


@dataclass
class RotatingJsonlWriter:
    """Appends JSON lines to ``path``, rotating at ``max_bytes`` and keeping ``max_files`` files.

    When a line would take the current file past ``max_bytes``, ``path`` becomes ``path.1``
    (``path.1`` becomes ``path.2``…) and the oldest beyond ``max_files`` is deleted. A single
    line longer than ``max_bytes`` is dropped and counted, so the bound always holds. Writes
    block; call from a thread (``asyncio.to_thread``) in an event loop.

    Attributes:
        path: the current file.
        max_bytes: most bytes in one file.
        max_files: most files kept, the current one included.
        written: lines written.
        dropped: lines dropped for being longer than ``max_bytes``.
    """

    path: str
    max_bytes: int = 10_000_000
    max_files: int = 5
    written: int = 0
    dropped: int = 0
    _file: IO[bytes] | None = field(default=None, init=False, repr=False)
    _size: int = field(default=0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {self.max_bytes}")
        if self.max_files < 1:
            raise ValueError(f"max_files must be >= 1, got {self.max_files}")

    @classmethod
    def from_config(cls, config: SampleLogConfig) -> RotatingJsonlWriter:
        """A writer for a :class:`SampleLogConfig`."""
        return cls(config.path, config.max_bytes, config.max_files)

    def write(self, record: Mapping[str, Any]) -> bool:
        """Append one record as a JSON line; False if it was dropped for its size."""
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            if len(line) > self.max_bytes:
                self.dropped += 1
                return False
            if self._file is None:
                self._open()
            if self._size + len(line) > self.max_bytes:
                self._rotate()
            file = self._file
            if file is None:  # pragma: no cover - _open/_rotate always set it
                raise RuntimeError("sample log file is not open")
            file.write(line)
            file.flush()
            self._size += len(line)
            self.written += 1
            return True

    def files(self) -> list[str]:
        """The files that exist now, newest first."""
        names = [self.path] + [f"{self.path}.{i}" for i in range(1, self.max_files)]
        return [n for n in names if os.path.exists(n)]

    def close(self) -> None:
        """Close the current file (a later write reopens it)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> RotatingJsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        self._file = open(self.path, "ab")  # kept open across writes; close() closes it
        self._size = self._file.tell()

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
        oldest = f"{self.path}.{self.max_files - 1}" if self.max_files > 1 else self.path
        if self.max_files > 1 and os.path.exists(oldest):
            os.remove(oldest)
        for i in range(self.max_files - 2, 0, -1):
            if os.path.exists(f"{self.path}.{i}"):
                os.replace(f"{self.path}.{i}", f"{self.path}.{i + 1}")
        if self.max_files > 1:
            os.replace(self.path, f"{self.path}.1")
        else:
            os.remove(self.path)
        self._open()
