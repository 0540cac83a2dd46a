"""bench_llm.py's parts: the report."""
