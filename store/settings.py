"""The farm's one settings object: the toolchain's settings plus what api/, workers/, store/ need.

It extends `toolchain.settings.Settings`, so the same ARMGYM_* environment variables configure the
verifier inside a worker and the services around it, and a FarmSettings can be passed to `verify`.
An empty `database_url` / `broker_url` selects the embedded mode (SQLite, in-process workers).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from toolchain.settings import Settings


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "armgym")


@dataclass(frozen=True)
class FarmSettings(Settings):
    # SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db; empty = SQLite under data_dir.
    database_url: str = ""
    # Celery broker, e.g. redis://127.0.0.1:6379/0; empty = in-process worker pool.
    broker_url: str = ""
    data_dir: str = ""
    # Comma-separated `name:key` (or bare keys) allowed to submit and read; stored hashed.
    api_keys: str = ""
    # A key with the admin scope (can create and revoke keys), stored hashed.
    admin_key: str = ""
    # Outstanding attempts (queued or running) beyond which submissions get 429.
    queue_limit: int = 20_000
    retry_after_s: int = 5
    max_batch: int = 5_000
    max_request_bytes: int = 64 * 1024 * 1024
    # Longest a client may hold a request open waiting for results (?wait=).
    max_wait_s: float = 120.0
    poll_interval_s: float = 0.2
    # Embedded pool size; 0 = the toolchain's `jobs` (one per core).
    embedded_workers: int = 0
    # Celery: time limits per verification, retries for infrastructure failures, and how long
    # Redis waits before re-delivering a message whose worker vanished without acknowledging it.
    task_soft_time_limit_s: int = 120
    task_time_limit_s: int = 150
    max_retries: int = 3
    retry_backoff_s: float = 1.0
    visibility_timeout_s: int = 600
    queue_name: str = "armgym"
    # Concurrent OpenEnv WebSocket sessions (/openenv/ws) one API process holds.
    openenv_max_sessions: int = 256
    # A Celery worker's Prometheus endpoint (workers/metrics.py); 0 = none.
    worker_metrics_port: int = 0
    worker_metrics_address: str = "0.0.0.0"
    # Recovery from the database (workers/sweeper.py, docs/operations.md "Faults and recovery"):
    # every sweep_interval_s (0 = never) each API process re-queues attempts whose lease ran out
    # and that the broker does not hold. A queued attempt's lease is sweep_grace_s; a running
    # one's is task_time_limit_s + sweep_grace_s. At most sweep_batch attempts per sweep.
    sweep_interval_s: float = 15.0
    sweep_grace_s: float = 60.0
    sweep_batch: int = 2_000
    # How long a worker keeps retrying the database (exponential backoff, each wait at most
    # store_retry_max_wait_s) before it hands the message back to the broker unacknowledged.
    store_retry_s: float = 900.0
    store_retry_max_wait_s: float = 30.0
    # Requests per second allowed to each API key (a moving window of one minute); 0 = no limit.
    rate_limit_per_s: float = 200.0
    # Test only (tests/faults): the API process kills itself with SIGKILL after storing a
    # submission and before queueing it, the one moment a crash leaves attempts nobody sends.
    fault_kill_before_enqueue: bool = False

    @property
    def embedded(self) -> bool:
        return not self.broker_url

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        data = Path(self.data_dir or _default_data_dir())
        data.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{data / 'farm.sqlite'}"

    @property
    def pool_size(self) -> int:
        return self.embedded_workers or self.jobs


@lru_cache(maxsize=1)
def get_farm_settings() -> FarmSettings:
    return FarmSettings.from_env()


def redact(url: str) -> str:
    """A URL without its password, fit for /health and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
