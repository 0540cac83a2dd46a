"""The metric names a PromQL expression reads, for the dashboard tests."""

from __future__ import annotations

import re

#: PromQL words that are not metric names when not followed by ``(``.
KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w$.:])([A-Za-z_:][\w:]*)\s*(\()?")


def metric_names(expr: str) -> set[str]:
    """Every metric name in ``expr``: identifiers left once strings, label matchers, ranges and
    grouping clauses are removed, that are neither functions (followed by ``(``) nor keywords."""
    for pattern in (_STRING, _MATCHERS, _RANGE, _GROUPING):
        expr = pattern.sub(" ", expr)
    return {
        m.group(1)
        for m in _IDENT.finditer(expr)
        if not m.group(2) and m.group(1).lower() not in KEYWORDS
    }


def label_values_metric(query: str) -> str | None:
    """The metric of a Grafana ``label_values(metric, label)`` variable query."""
    m = re.fullmatch(
        r"\s*label_values\(\s*([A-Za-z_:][\w:]*)\s*(?:\{[^}]*\})?\s*,\s*\w+\s*\)\s*", query
    )
    return m.group(1) if m else None
