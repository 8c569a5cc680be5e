#!/usr/bin/env bash
# The main job on one machine: set up, then score the demo submissions and print their verdicts.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/armgym demo "$@"
