#!/usr/bin/env bash
# Make sure PostgreSQL and Redis are running on 127.0.0.1 (start them as plain processes if not)
# and that the `armgym` database role exists. Used by test.sh and farm.sh; safe to re-run.
set -euo pipefail

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi
}

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  if [ -z "$version" ]; then
    echo "services: PostgreSQL is not installed (run ./scripts/setup.sh)" >&2; exit 1
  fi
  echo "services: starting PostgreSQL $version" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.5; done
fi
# A password role works whatever pg_hba says for 127.0.0.1 (trust, md5 or scram-sha-256).
if ! as_postgres "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname = 'armgym'\"" | grep -q 1; then
  as_postgres "psql -qc \"CREATE ROLE armgym LOGIN CREATEDB PASSWORD 'armgym'\""
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "services: starting Redis" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no >/dev/null
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
