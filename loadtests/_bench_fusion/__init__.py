"""bench_fusion.py's parts: the configurations measured, the report."""
