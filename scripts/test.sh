#!/usr/bin/env bash
# Install, then run lint, type checks and the whole test suite (unit, integration, e2e).
# The integration and e2e tiers start one local Ray cluster for the session and stop it after.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/setup.sh
ruff check .
ruff format --check .
mypy
# Tiers in order: fast feedback first; the real vLLM engine (tests/llm) next; the e2e tier
# (serve run, README, locust) last.
if [ "$#" -eq 0 ]; then set -- tests/unit tests/integration tests/llm tests/e2e; fi
python -m pytest "$@"
