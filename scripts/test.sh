#!/usr/bin/env bash
# Install, then run lint, type checks, import contracts and the whole test suite (unit,
# integration, llm, e2e). The Ray tiers start one local Ray cluster for their session and stop it
# after.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
stamp() { echo "== $(date -u +%T) $*"; }
stamp install
source scripts/setup.sh
# Chromium for the live page's browser test (tests/e2e/test_ui.py), from Debian's packages;
# Playwright drives it (no browser download). Skipped when present or where apt is missing.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
  && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
fi
stamp lint
ruff check .
ruff format --check .
mypy
lint-imports
# With paths (e.g. `bash scripts/test.sh tests/unit/test_dsl.py -x`) pytest runs just those,
# options included, in one process.
for arg in "$@"; do
  if [[ "$arg" != -* && -e "${arg%%::*}" ]]; then exec python -m pytest "$@"; fi
done
# Otherwise (options only, or nothing) every tier, fast feedback first: the unit tier (no Ray)
# spread over 2 processes, then the Ray tiers in one process, so that one Ray cluster serves
# them all: integration, the real vLLM engine (tests/llm), e2e (serve run, README, locust).
# Both run even when the first fails.
unit=0
ray=0
stamp unit tier
python -m pytest -n 2 "$@" tests/unit || unit=$?
stamp Ray tiers
python -m pytest --durations=15 "$@" tests/integration tests/llm tests/e2e || ray=$?
stamp done
# 5 is "no test selected" (e.g. a -k that matches tests of one of the two only): an error only
# when neither selected any.
if [ "$unit" -eq 5 ] && [ "$ray" -eq 5 ]; then exit 5; fi
for rc in "$unit" "$ray"; do
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then exit "$rc"; fi
done
