"""Shadow output comparison: how the shadow's outputs compare with the primary's.

:class:`ShadowComparator` keeps the label agreement rate and the mean absolute difference of
numbers, per output field (:class:`FieldComparison`) and overall; it is mergeable, so replicas'
figures add up in the router's shared state.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_FIELDS", "FieldComparison", "ShadowComparator"]

#: Most output fields a comparator keeps figures for (the overall figures count them all).
MAX_FIELDS = 256


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
