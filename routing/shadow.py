"""Shadow (mirror) traffic, the pure parts: which requests to mirror, how many may be in flight,
how the shadow's outputs compare with the primary's, and a bounded log of sampled pairs.

- :class:`MirrorDecider`: mirror a configured fraction of requests (injected RNG).
- :class:`InFlightLimiter`: at most ``max_in_flight`` shadow calls at once; the excess is
  dropped and counted, so the shadow never queues behind or slows the primary.
- :class:`ShadowComparator`: label agreement rate and mean absolute difference of numbers,
  per output field and overall; mergeable, so replicas' figures add up in the shared state.
- :class:`RotatingJsonlWriter`: JSON lines into a file of at most ``max_bytes``, rotated like
  ``logging.handlers.RotatingFileHandler`` and never more than ``max_files`` files.

The router fires the shadow call as a background task after ``try_acquire()`` and calls
``release()`` when it ends, then feeds both outputs to the comparator.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

#: Most output fields a comparator keeps figures for (the overall figures count them all).
MAX_FIELDS = 256

__all__ = [
    "FieldComparison",
    "InFlightLimiter",
    "MirrorDecider",
    "RotatingJsonlWriter",
    "SampleLogConfig",
    "ShadowComparator",
    "ShadowConfig",
]


class SampleLogConfig(BaseModel):
    """Where sampled (input, primary, shadow) triples go, and how much of them is kept."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(description="JSONL file; rotated files get .1, .2... suffixes.")
    fraction: float = Field(
        0.01, ge=0, le=1, description="Share of compared shadow calls whose triple is logged."
    )
    max_bytes: int = Field(
        10_000_000, ge=1024, description="Largest size of one file before it is rotated."
    )
    max_files: int = Field(5, ge=1, description="Most files kept, the current one included.")


class ShadowConfig(BaseModel):
    """A shadow router's settings: what share of traffic is mirrored and how much at once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fraction: float = Field(1.0, ge=0, le=1, description="Share of requests mirrored.")
    max_in_flight: int = Field(
        16, ge=0, description="Most shadow calls running at once; the excess is dropped."
    )
    fields: list[str] | None = Field(
        None,
        description="Output fields to compare (dots reach into nested objects); None compares "
        "every field of both outputs.",
    )
    sample_log: SampleLogConfig | None = Field(
        None, description="Optional bounded, rotating JSONL log of compared pairs."
    )


class MirrorDecider:
    """Decides whether a request is mirrored: with probability ``fraction``.

    Args:
        fraction: share of requests to mirror, in [0, 1].
        rng: random source; inject a seeded ``random.Random`` in tests.
    """

    def __init__(self, fraction: float, rng: random.Random | None = None):
        if not 0 <= fraction <= 1:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        self.fraction = fraction
        self._rng = rng or random.Random()

    def should_mirror(self) -> bool:
        """True for about ``fraction`` of calls (never for 0, always for 1)."""
        return self.fraction >= 1 or self._rng.random() < self.fraction

    def __repr__(self) -> str:
        return f"MirrorDecider(fraction={self.fraction})"


class InFlightLimiter:
    """Bounds concurrent shadow calls; a call that does not fit is dropped and counted.

    Thread-safe. Every successful :meth:`try_acquire` must be paired with one :meth:`release`.

    Args:
        limit: most calls in flight at once (0 drops everything).
    """

    def __init__(self, limit: int):
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.limit = limit
        self.in_flight = 0
        self.started = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        """Take a slot if one is free; otherwise count a drop and return False."""
        with self._lock:
            if self.in_flight >= self.limit:
                self.dropped += 1
                return False
            self.in_flight += 1
            self.started += 1
            return True

    def release(self) -> None:
        """Give back a slot taken by :meth:`try_acquire`."""
        with self._lock:
            if self.in_flight == 0:
                raise RuntimeError("release() without a matching try_acquire()")
            self.in_flight -= 1

    def stats(self) -> dict[str, int]:
        """``limit``, ``in_flight``, ``started`` and ``dropped``."""
        with self._lock:
            return {
                "limit": self.limit,
                "in_flight": self.in_flight,
                "started": self.started,
                "dropped": self.dropped,
            }

    def __repr__(self) -> str:
        return f"InFlightLimiter(limit={self.limit}, in_flight={self.in_flight})"


@dataclass
class FieldComparison:
    """Running comparison figures of one output field (or of all fields together).

    Attributes:
        labels: label pairs compared (strings, integers, booleans, None).
        agree: label pairs that were equal.
        numbers: numbers compared (each element of an array counts).
        abs_diff_sum: sum of the absolute differences of those numbers.
        max_abs_diff: largest absolute difference seen.
        mismatched: pairs that could not be compared (different kinds or shapes, missing).
    """

    labels: int = 0
    agree: int = 0
    numbers: int = 0
    abs_diff_sum: float = 0.0
    max_abs_diff: float = 0.0
    mismatched: int = 0

    @property
    def agreement_rate(self) -> float | None:
        """Share of equal label pairs; None before the first."""
        return self.agree / self.labels if self.labels else None

    @property
    def mean_abs_diff(self) -> float | None:
        """Mean absolute difference of the numbers; None before the first."""
        return self.abs_diff_sum / self.numbers if self.numbers else None

    def merge(self, other: FieldComparison) -> None:
        """Add ``other``'s figures to these."""
        self.labels += other.labels
        self.agree += other.agree
        self.numbers += other.numbers
        self.abs_diff_sum += other.abs_diff_sum
        self.max_abs_diff = max(self.max_abs_diff, other.max_abs_diff)
        self.mismatched += other.mismatched

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with the agreement rate and mean absolute difference."""
        return {
            "labels": self.labels,
            "agree": self.agree,
            "agreement_rate": self.agreement_rate,
            "numbers": self.numbers,
            "abs_diff_sum": self.abs_diff_sum,
            "mean_abs_diff": self.mean_abs_diff,
            "max_abs_diff": self.max_abs_diff,
            "mismatched": self.mismatched,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldComparison:
        """Rebuild from :meth:`to_dict`'s output."""
        return cls(
            int(data["labels"]),
            int(data["agree"]),
            int(data["numbers"]),
            float(data["abs_diff_sum"]),
            float(data["max_abs_diff"]),
            int(data["mismatched"]),
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int, float))


def _flatten(value: Any) -> tuple[list[Any], tuple[int, ...]] | None:
    """A scalar or (nested, rectangular) list of scalars as a flat list and its shape."""
    if _is_scalar(value):
        return [value], ()
    if isinstance(value, (list, tuple)):
        if not value:
            return [], (0,)
        flat: list[Any] = []
        shape: tuple[int, ...] | None = None
        for item in value:
            part = _flatten(item)
            if part is None or (shape is not None and part[1] != shape):
                return None
            flat.extend(part[0])
            shape = part[1]
        return flat, (len(value), *(shape or ()))
    return None


def _leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted path, value)`` for every non-object value in a JSON object."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, value


def _get(value: Any, path: str) -> tuple[bool, Any]:
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _compare_values(a: Any, b: Any, out: FieldComparison) -> None:
    """Add one field's comparison to ``out``: numbers if either side has a float, else labels."""
    fa, fb = _flatten(a), _flatten(b)
    if fa is None or fb is None or fa[1] != fb[1]:
        out.mismatched += 1
        return
    if any(isinstance(x, float) for x in (*fa[0], *fb[0])):
        for x, y in zip(fa[0], fb[0]):
            if not (_is_number(x) and _is_number(y)) or math.isnan(x - y):
                out.mismatched += 1
                continue
            diff = abs(x - y)
            out.numbers += 1
            out.abs_diff_sum += diff
            out.max_abs_diff = max(out.max_abs_diff, diff)
    else:
        # Integers count as class labels here: outputs like {"label": 3} are far more common
        # than integer measurements; a float anywhere makes the field numeric.
        for x, y in zip(fa[0], fb[0]):
            out.labels += 1
            out.agree += int(x == y and type(x) is type(y))


class ShadowComparator:
    """Compares each shadow output with the primary's, per field and overall.

    A field holding a float, or an array with a float in it, is numeric: its elements are
    compared by absolute difference. Any other scalar or array of scalars (strings, integers,
    booleans, None) holds labels, compared for equality element by element. Arrays must have
    equal shapes; a shape or kind mismatch, or a field present in one output only, counts as
    mismatched.

    Args:
        fields: dotted output fields to compare; None compares every leaf field of both.
    """

    def __init__(self, fields: Sequence[str] | None = None):
        self.fields = list(fields) if fields is not None else None
        self.compared = 0
        self.shadow_errors = 0
        self.overall = FieldComparison()
        self.by_field: dict[str, FieldComparison] = {}

    def compare(self, primary: Mapping[str, Any], shadow: Mapping[str, Any]) -> FieldComparison:
        """Compare one pair of outputs; returns this pair's figures (also added to the totals)."""
        pair = FieldComparison()
        for path, (has_a, a), (has_b, b) in self._pairs(primary, shadow):
            one = FieldComparison()
            if has_a and has_b:
                _compare_values(a, b, one)
            else:
                one.mismatched += 1
            if path in self.by_field or len(self.by_field) < MAX_FIELDS:
                self.by_field.setdefault(path, FieldComparison()).merge(one)
            pair.merge(one)
        self.compared += 1
        self.overall.merge(pair)
        return pair

    def _pairs(
        self, primary: Mapping[str, Any], shadow: Mapping[str, Any]
    ) -> Iterator[tuple[str, tuple[bool, Any], tuple[bool, Any]]]:
        if self.fields is not None:
            for path in self.fields:
                yield path, _get(primary, path), _get(shadow, path)
            return
        left, right = dict(_leaves(primary)), dict(_leaves(shadow))
        for path in dict.fromkeys([*left, *right]):
            yield path, (path in left, left.get(path)), (path in right, right.get(path))

    def record_error(self) -> None:
        """Count a shadow call that failed (nothing to compare)."""
        self.shadow_errors += 1

    def merge(self, other: ShadowComparator) -> None:
        """Add another replica's figures to these."""
        self.compared += other.compared
        self.shadow_errors += other.shadow_errors
        self.overall.merge(other.overall)
        for path, figures in other.by_field.items():
            self.by_field.setdefault(path, FieldComparison()).merge(figures)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: counts, overall figures and figures per field."""
        return {
            "compared": self.compared,
            "shadow_errors": self.shadow_errors,
            "overall": self.overall.to_dict(),
            "fields": {p: f.to_dict() for p, f in self.by_field.items()},
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], fields: Sequence[str] | None = None
    ) -> ShadowComparator:
        """Rebuild from :meth:`to_dict`'s output."""
        comparator = cls(fields)
        comparator.compared = int(data["compared"])
        comparator.shadow_errors = int(data["shadow_errors"])
        comparator.overall = FieldComparison.from_dict(data["overall"])
        comparator.by_field = {p: FieldComparison.from_dict(f) for p, f in data["fields"].items()}
        return comparator

    def __repr__(self) -> str:
        return (
            f"ShadowComparator(compared={self.compared}, "
            f"agreement_rate={self.overall.agreement_rate}, "
            f"mean_abs_diff={self.overall.mean_abs_diff})"
        )


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
