#!/usr/bin/env bash
# Set up, then run the whole test suite against the real tools (and lint).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/services.sh  # PostgreSQL and Redis for the farm's integration tests
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -n 3 -q --durations=30 "$@"
