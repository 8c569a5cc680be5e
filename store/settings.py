"""The farm's one settings object: what api/, workers/, store/ need, holding the core's settings.

`FarmSettings.core` is the verifier's `toolchain.settings.Settings`, read from the same ARMGYM_*
environment, so one set of variables configures the verifier inside a worker and the services
around it; the farm passes `core` to `verify`. An empty `database_url` / `broker_url` selects the
embedded mode (SQLite, in-process workers). Validated when made: impossible combinations (a
visibility timeout that does not exceed the hard time limit, ...) refuse to start.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from toolchain.settings import EnvSettings, Settings


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "armgym")


class FarmSettings(EnvSettings):
    # The verifier's settings (ARMGYM_CACHE_DIR, ARMGYM_SANDBOX, ...): see toolchain/settings.py.
    core: Settings = Field(default_factory=Settings)
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
    queue_limit: int = Field(20_000, ge=1)
    retry_after_s: int = Field(5, ge=0)
    max_batch: int = Field(5_000, ge=1)
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    # Longest a client may hold a request open waiting for results (?wait=).
    max_wait_s: float = Field(120.0, ge=0)
    poll_interval_s: float = Field(0.2, gt=0)
    # After each attempt a pool process returns glibc's free heap to the OS (workers/heap.py):
    # without it a pool process's RSS rose about 45% over its first 600 verifications.
    malloc_trim: bool = True
    # Embedded pool size; 0 = the toolchain's `jobs` (one per core).
    embedded_workers: int = Field(0, ge=0)
    # Celery: time limits per verification, retries for infrastructure failures, and how long
    # Redis waits before re-delivering a message whose worker vanished without acknowledging it.
    task_soft_time_limit_s: int = Field(120, ge=1)
    task_time_limit_s: int = Field(150, ge=1)
    max_retries: int = Field(3, ge=0)
    retry_backoff_s: float = Field(1.0, ge=0)
    visibility_timeout_s: int = Field(600, ge=1)
    queue_name: str = "armgym"
    # Attempts of one submission per Celery message (workers/dispatch.py): each message costs
    # the API a send and the worker a fetch, an ack and an idle gap. The message's time limits
    # are the ones above times its length, and a dead worker strands up to this many attempts per
    # pool process until the visibility timeout. 1 = one message per attempt.
    dispatch_chunk: int = Field(2, ge=1)
    # Duplicates answered from memory (api/recent.py): verdicts of this many content keys kept
    # per API process (0 = every duplicate goes through the database), and at most this many
    # answered duplicates waiting to be stored (beyond it, duplicates are stored before the answer).
    recent_verdicts: int = Field(50_000, ge=0)
    record_queue: int = Field(10_000, ge=1)
    # Concurrent OpenEnv WebSocket sessions (/openenv/ws) one API process holds.
    openenv_max_sessions: int = Field(256, ge=1)
    # A Celery worker's Prometheus endpoint (workers/metrics.py); 0 = none.
    worker_metrics_port: int = Field(0, ge=0, le=65535)
    worker_metrics_address: str = "0.0.0.0"
    # Recovery from the database (workers/sweeper.py, docs/operations.md "Faults and recovery"):
    # every sweep_interval_s (0 = never) each API process re-queues attempts whose lease ran out
    # and that the broker does not hold. A queued attempt's lease is sweep_grace_s; a running
    # one's is task_time_limit_s + sweep_grace_s. At most sweep_batch attempts per sweep.
    sweep_interval_s: float = Field(15.0, ge=0)
    sweep_grace_s: float = Field(60.0, ge=0)
    sweep_batch: int = Field(2_000, ge=1)
    # How long a worker keeps retrying the database (exponential backoff, each wait at most
    # store_retry_max_wait_s) before it hands the message back to the broker unacknowledged.
    store_retry_s: float = Field(900.0, ge=0)
    store_retry_max_wait_s: float = Field(30.0, gt=0)
    # Requests per second allowed to each API key (a moving window of one minute); 0 = no limit.
    rate_limit_per_s: float = Field(200.0, ge=0)
    # How long an API process trusts a key it found valid without asking the database again
    # (api/keycache.py); a key revoked through another API process still works here for at
    # most this long (through this one: not at all). 0 = every request reads the database.
    key_cache_ttl_s: float = Field(10.0, ge=0)
    # Test only (tests/faults): the API process kills itself with SIGKILL after storing a
    # submission and before queueing it, the one moment a crash leaves attempts nobody sends.
    fault_kill_before_enqueue: bool = False
    # Test only (tests/farm, tests/faults): accept a visibility timeout that does not exceed the
    # hard time limit, so a killed worker's message comes back within seconds. A verification
    # still running is then delivered to a second worker too (stored once, verified twice).
    allow_early_redelivery: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.task_soft_time_limit_s >= self.task_time_limit_s:
            raise ValueError(
                f"ARMGYM_TASK_SOFT_TIME_LIMIT_S ({self.task_soft_time_limit_s}) must be below "
                f"ARMGYM_TASK_TIME_LIMIT_S ({self.task_time_limit_s}): the soft limit is what "
                "lets a verification be retried before the hard one kills its process")
        longest = self.task_time_limit_s * self.dispatch_chunk  # a full message's hard limit
        if self.broker_url and self.visibility_timeout_s <= longest \
                and not self.allow_early_redelivery:
            raise ValueError(
                f"ARMGYM_VISIBILITY_TIMEOUT_S ({self.visibility_timeout_s}) must exceed "
                f"ARMGYM_TASK_TIME_LIMIT_S ({self.task_time_limit_s}) x ARMGYM_DISPATCH_CHUNK "
                f"({self.dispatch_chunk}): Redis would hand a verification still running to a "
                "second worker")
        return self

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
        return self.embedded_workers or self.core.jobs


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
