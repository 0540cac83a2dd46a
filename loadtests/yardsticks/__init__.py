"""The hand-written yardsticks the benchmarks measure servegraph against, vendored.

Copied from the team's read-only ``shared/bench/`` folder (``handwritten.py``,
``handwritten_grpc.py``, ``loadgen.py``) so that a clean clone of this repository runs every
benchmark: nothing in the project imports from ``../shared`` at run time. The copies behave as
the originals do (same deployments, same handle options, same request loop); only formatting,
type hints and import paths changed. When the originals change, copy them again.
"""
