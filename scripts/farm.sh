#!/usr/bin/env bash
# The full farm on one machine as plain processes: PostgreSQL and Redis (started if needed),
# migrations, Celery workers, Flower and the API. Ctrl-C stops what this script started.
#
#   ./scripts/farm.sh        API http://127.0.0.1:8000 (docs at /docs), Flower http://127.0.0.1:5555
#
# Settings come from ARMGYM_* variables (docs/configuration.md); defaults below.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/services.sh

export ARMGYM_DATABASE_URL=${ARMGYM_DATABASE_URL:-postgresql+psycopg://armgym:armgym@127.0.0.1:5432/armgym}
export ARMGYM_BROKER_URL=${ARMGYM_BROKER_URL:-redis://127.0.0.1:6379/0}
if [ -z "${ARMGYM_ADMIN_KEY:-}" ]; then
  ARMGYM_ADMIN_KEY=$(.venv/bin/python -c "from store.keys import new_plaintext; print(new_plaintext())")
  export ARMGYM_ADMIN_KEY
  echo "farm: admin API key for this session: $ARMGYM_ADMIN_KEY" >&2
fi
API_PORT=${API_PORT:-8000}
FLOWER_PORT=${FLOWER_PORT:-5555}
WORKERS=${WORKERS:-1}                          # Celery worker processes (each with a pool)
CONCURRENCY=${CONCURRENCY:-$(( $(nproc) + 1 ))}  # pool processes per worker: cores + 1

.venv/bin/python -m store.admin create         # create the database if missing; alembic upgrade head

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait; }
trap cleanup EXIT INT TERM

for i in $(seq 1 "$WORKERS"); do
  # each worker's Prometheus endpoint: 127.0.0.1:9808, 9809, ...
  ARMGYM_WORKER_METRICS_PORT=$((9807 + i)) ARMGYM_WORKER_METRICS_ADDRESS=127.0.0.1 \
  .venv/bin/celery -A workers.celery_app worker -n "worker$i@%h" --concurrency "$CONCURRENCY" \
    -E --without-mingle --without-gossip --loglevel "${LOGLEVEL:-info}" &
  pids+=($!)
done
FLOWER_UNAUTHENTICATED_API=${FLOWER_UNAUTHENTICATED_API:-true} \
  .venv/bin/celery -A workers.celery_app flower --address=127.0.0.1 --port="$FLOWER_PORT" \
  --purge_offline_workers=300 &
pids+=($!)
.venv/bin/uvicorn --factory api.app:create_app --http httptools --host "${API_HOST:-127.0.0.1}" --port "$API_PORT" &
pids+=($!)
echo "farm: API http://127.0.0.1:$API_PORT/docs  Flower http://127.0.0.1:$FLOWER_PORT" >&2
wait -n
