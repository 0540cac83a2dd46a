"""The configurations bench_fusion.py measures, and what each must look like."""

from __future__ import annotations

#: Graph configuration -> (Serve config whose deployments it takes, fusion, label).
CONFIGS = {
    "none": ("configs/digits.yaml", "none", "(b) graph, fusion: none"),
    "cheap": ("configs/digits.yaml", "cheap", "(c) graph, fusion: cheap (default)"),
    "all": ("configs/digits-fused.yaml", "all", "(d) graph, fusion: all, 2 ingress"),
}
#: The Serve deployments each configuration must have (``GET /graph``).
DEPLOYMENTS = {
    "none": {"ingress", "scale", "split", "logreg", "mlp", "both"},
    "cheap": {"ingress", "logreg", "mlp"},
    "all": {"ingress"},
}
PEER = "peer"
PEER_LABEL = "(a) FastAPI peer"
NUM_CPUS = 2
