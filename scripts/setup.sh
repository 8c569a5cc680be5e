#!/usr/bin/env bash
# Install everything the verifier needs on a fresh Debian 12 / Ubuntu machine (idempotent, quick
# when already done): the AArch64 toolchain, the emulator, the sandbox, and a Python venv.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(binutils-aarch64-linux-gnu gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
              llvm-19 bubblewrap python3-venv python3-pip
              postgresql redis-server)  # the last two for the farm (scripts/farm.sh, tests)
# For the tests only: Prometheus and promtool (alert rules, a real scrape of the farm), and
# headless Chromium with its WebDriver (the run dashboard is tested in a real browser).
TEST_PACKAGES=(prometheus chromium chromium-driver)
missing=()
for pkg in "${APT_PACKAGES[@]}" "${TEST_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# The farm (the core and the extras of its services and reports) and the trainer-side client
# (clients/python, its own distribution), both editable; the packages deploy/requirements.lock
# pins (the images' closure) at its versions, so a fresh machine tests what the images run,
# not whatever was released since (tests/test_deploy.py checks the venv against the lock).
stamp=.venv/.installed-$(cat pyproject.toml clients/python/pyproject.toml deploy/requirements.lock \
                         | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  # The CPU torch wheel first (a file on disk here): a plain `torch` asked for by anything
  # installed before it would fetch a CUDA build. Then the packages whose own dependency lists
  # are GPU-only or far wider than what is used, without them (pyproject.toml, tool.armgym).
  .venv/bin/pip install -q torch==2.13.0
  mapfile -t no_deps < <("$PY" -c 'import tomllib; print("\n".join(tomllib.load(open(
      "pyproject.toml", "rb"))["tool"]["armgym"]["no-deps"]))')
  .venv/bin/pip install -q --no-deps "${no_deps[@]}"
  .venv/bin/pip install -q -c deploy/requirements.lock -e ".[farm,reports,dev,frameworks]" \
      -e clients/python
  rm -f .venv/.installed-*; touch "$stamp"
fi
# The run dashboard's chart library (uPlot, pinned with its integrity hash in
# api/ui/package-lock.json) from the npm registry into api/ui/vendor/, which the API serves
# at /ui/static/vendor/; not committed, so the lockfile is the one record of what is served.
ui_stamp=api/ui/vendor/.installed-$(sha256sum api/ui/package-lock.json | cut -c1-16)
if [ ! -f "$ui_stamp" ]; then
  command -v npm >/dev/null || { echo "setup: npm is needed for the run dashboard (apt-get install npm)" >&2; exit 1; }
  (cd api/ui && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  rm -rf api/ui/vendor && mkdir -p api/ui/vendor
  cp api/ui/node_modules/uplot/dist/uPlot.iife.min.js api/ui/node_modules/uplot/dist/uPlot.min.css \
     api/ui/node_modules/uplot/LICENSE api/ui/vendor/
  touch "$ui_stamp"
fi
# The static helper that starts every sandboxed step, and the execution guard (qemu plugin API
# header from Debian's qemu source package, once; the plugin built with the pinned zig).
.venv/bin/armgym prepare >/dev/null
