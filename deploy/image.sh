#!/bin/sh
# The build steps both images share (toolchain/Dockerfile: the worker, api/Dockerfile: the API,
# Flower and the migrations), so the two Dockerfiles stay one recipe with a role switch:
#
#   image.sh system api|worker   Debian packages for the role, tini, the unprivileged user
#   image.sh python              /opt/venv with exactly deploy/requirements.lock
#   image.sh app                 the project itself (editable, no deps), pip check, bytecode,
#                                the spawn helper and every -O3 baseline, built into
#                                $ARMGYM_CACHE_SEED
#
# Set DEBIAN_SNAPSHOT (e.g. 20251101T000000Z) to install from snapshot.debian.org at that
# moment, for a bit-for-bit repeatable toolchain; the installed versions are recorded in
# /opt/armgym/apt-versions.txt either way (and every verdict records each tool's version).
set -eu

# The compilers: the API serves their baselines (POST /reset) and their versions key the
# baseline cache, so both roles need them. Emulator, cost model and sandbox run only in workers.
# Keep in step with APT_PACKAGES in scripts/setup.sh (tests/test_deploy.py checks).
COMPILERS="binutils-aarch64-linux-gnu gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
VERIFIER="qemu-user llvm-19 bubblewrap"
APP_UID=10001

system() {
  case "${1:-}" in
    api) packages="$COMPILERS" ;;
    worker) packages="$COMPILERS $VERIFIER" ;;
    *) echo "image.sh system api|worker" >&2; exit 2 ;;
  esac
  if [ -n "${DEBIAN_SNAPSHOT:-}" ]; then
    sed -i -e "s|http://deb.debian.org/debian-security|http://snapshot.debian.org/archive/debian-security/$DEBIAN_SNAPSHOT|" \
           -e "s|http://deb.debian.org/debian|http://snapshot.debian.org/archive/debian/$DEBIAN_SNAPSHOT|" \
           /etc/apt/sources.list.d/debian.sources
    echo 'Acquire::Check-Valid-Until "false";' > /etc/apt/apt.conf.d/99snapshot
  fi
  apt-get update -q
  # shellcheck disable=SC2086  # word splitting of the package lists is intended
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $packages tini
  rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
  mkdir -p /opt/armgym
  # shellcheck disable=SC2086
  dpkg-query -W $packages tini > /opt/armgym/apt-versions.txt
  groupadd --gid "$APP_UID" armgym
  useradd --uid "$APP_UID" --gid "$APP_UID" --no-create-home --home-dir /nonexistent \
          --shell /usr/sbin/nologin armgym
  # The writable cache's mount point; the cache itself is a subdirectory the user creates, as
  # the verifier chmods its cache directory and may only do so on a directory it owns.
  install -d -o "$APP_UID" -g "$APP_UID" -m 0755 /var/cache/armgym
}

python_env() {
  python -m venv /opt/venv
  /opt/venv/bin/pip install --no-cache-dir -q -r deploy/requirements.lock
}

app() {
  /opt/venv/bin/pip install --no-cache-dir -q --no-deps -e .
  /opt/venv/bin/pip check
  /opt/venv/bin/python -m compileall -q api deploy migrations store toolchain workers
  ARMGYM_CACHE_DIR="$ARMGYM_CACHE_SEED" /opt/venv/bin/armgym prepare
  ARMGYM_CACHE_DIR="$ARMGYM_CACHE_SEED" TQDM_MININTERVAL=30 /opt/venv/bin/armgym baselines build
  chmod -R a+rX "$ARMGYM_CACHE_SEED"
}

case "${1:-}" in
  system) system "${2:-}" ;;
  python) python_env ;;
  app) app ;;
  *) echo "usage: image.sh system api|worker | python | app" >&2; exit 2 ;;
esac
