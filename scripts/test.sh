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
python -m pytest tests "$@"
