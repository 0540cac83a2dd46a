"""bench_batching.py's parts: the ONNX model, the worker (cluster side), the report."""
