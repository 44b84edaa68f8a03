#!/usr/bin/env bash
# The project's test command: lint, type-check, then the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not browser").
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff"
python3 -m ruff check .
echo "== mypy (strict)"
python3 -m mypy
# Full speech sets: $WEBRTC_STT_SPEECH_DIR (default ../shared/data/speech, speech-wide beside
# it); tests that need an absent one skip (fail under CI=true). tests/data/ is bundled.
echo "== pytest (speech sets: ${WEBRTC_STT_SPEECH_DIR:-../shared/data/speech})"
python3 -m pytest "$@"
