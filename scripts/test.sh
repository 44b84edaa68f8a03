#!/usr/bin/env bash
# The project's test command: lint, type-check, then the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not browser").
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff"
python3 -m ruff check .
echo "== mypy (strict)"
python3 -m mypy
echo "== pytest"
python3 -m pytest "$@"
