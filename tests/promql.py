"""What Ray's Prometheus endpoint shows, and the metric names a PromQL expression reads."""

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


def scrape() -> dict[str, list[dict[str, str]]]:
    """Sample name -> the label sets of its samples, from this Ray node's metrics endpoint
    (``ray_servegraph_node_requests_total``, ``..._latency_ms_bucket``: sample names)."""
    import httpx
    import ray
    from prometheus_client.parser import text_string_to_metric_families

    port = ray.nodes()[0]["MetricsExportPort"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(dict(sample.labels))
    return out


def has(samples: dict[str, list[dict[str, str]]], name: str, **labels: str) -> bool:
    """Whether a sample of ``name`` carries ``labels``."""
    return any(all(s.get(k) == v for k, v in labels.items()) for s in samples.get(name, []))
