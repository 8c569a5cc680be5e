#!/usr/bin/env bash
# The main job on one machine: set up, start the embedded farm (SQLite, in-process workers: no
# broker or database needed), score the demo submissions as one batch through its HTTP API, and
# print their verdicts. `.venv/bin/armgym demo` scores the same set without the API.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m api.demo "$@"
