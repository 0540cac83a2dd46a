#!/usr/bin/env bash
# The LLM benchmark on a GPU machine: the same graph (prompt template -> vLLM node) on CUDA, with
# the node as two replicas of 0.5 GPU each (fractional GPUs), against two in-process engines with
# the same share of GPU memory; prints tokens/s both ways, their ratio and the TTFT overhead, and
# writes loadtests/reports/bench_llm_gpu.md.
#
#   bash loadtests/bench_llm_gpu.sh                      # the tiny demo model (built here)
#   bash loadtests/bench_llm_gpu.sh --model /models/Qwen2.5-0.5B-Instruct --max-tokens 256
#   bash loadtests/bench_llm_gpu.sh --replicas 4         # four 0.25-GPU replicas
#
# CUDA vLLM pins its own (CUDA) torch, so it gets a virtualenv of its own (artifacts/venv-gpu, or
# $VENV), with the `llm` extra instead of `llm-cpu`. Needs nvidia-smi and one GPU: the graph's
# engines and the direct ones are up at the same time (their rounds alternate), each taking
# 0.9 / (2 x replicas) of the GPU's memory.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "bench_llm_gpu.sh: no nvidia-smi here; run loadtests/bench_llm.py for the CPU benchmark" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader
VENV="${VENV:-$ROOT/artifacts/venv-gpu}"
[ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
STAMP="$VENV/.servegraph-gpu-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$ROOT[dev,llm]"
  echo "$WANT" > "$STAMP"
fi
"$VENV/bin/python" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'"
"$VENV/bin/python" -m graphs.examples.tiny_llm build >/dev/null
exec "$VENV/bin/python" loadtests/bench_llm.py --gpu "$@"
