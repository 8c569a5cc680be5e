#!/usr/bin/env bash
# Set up, then run the whole test suite against the real tools (and lint).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -n 2 -q "$@"
