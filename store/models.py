"""The farm's tables. The schema itself is created only by the Alembic migrations in migrations/;
these models must agree with them (tests/farm/test_migrations.py runs autogenerate's comparison).

One attempt row per submission, holding the first-class columns the views and indexes use and the
whole verdict as JSON (JSONB on PostgreSQL), so fields the verifier adds later are kept without a
migration and can be promoted to columns when someone needs to index them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# JSONB on PostgreSQL (indexable, compact), plain JSON text on SQLite.
Json = JSON().with_variant(JSONB(), "postgresql")

QUEUED, RUNNING, DONE = "queued", "running", "done"
STATUSES = (QUEUED, RUNNING, DONE)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are written in UTC; SQLite forgets the zone, so it is put back on reading and
    both backends hand out the same aware datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


class ApiKey(Base):
    """A client credential; only the SHA-256 of the key is stored (keys are 256-bit random)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    scopes: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Assembly(Base):
    """Submitted text, stored once per content hash however often it is submitted."""

    __tablename__ = "assemblies"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (UniqueConstraint("api_key_id", "idempotency_key", name="uq_batches_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    run_id: Mapped[str | None] = mapped_column(String(200))
    step: Mapped[int | None] = mapped_column(Integer)
    model: Mapped[str | None] = mapped_column(String(200))
    total: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BatchItem(Base):
    """A batch is an ordered list of attempts; a resent attempt appears in a new batch by
    reference, never as a second attempt."""

    __tablename__ = "batch_items"
    __table_args__ = (Index("ix_batch_items_attempt", "attempt_id"),)

    batch_id: Mapped[str] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt_id: Mapped[str] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"))


class Attempt(Base):
    __tablename__ = "attempts"
    __table_args__ = (
        # Idempotency keys are scoped to the API key that submitted them, so two clients can never
        # collide on (or read back) each other's attempts by choosing the same key.
        UniqueConstraint("api_key_id", "idempotency_key", name="uq_attempts_key"),
        Index("ix_attempts_run_step", "run_id", "step"),
        Index("ix_attempts_variant_passed", "variant_id", "passed"),
        Index("ix_attempts_created", "created_at", "id"),
        Index("ix_attempts_error_kind", "error_kind"),
        Index("ix_attempts_outstanding", "status",
              postgresql_where=text("status <> 'done'"), sqlite_where=text("status <> 'done'")),
        Index("ix_attempts_content_key", "content_key"),
        Index("ix_attempts_lease", "lease_until",
              postgresql_where=text("status <> 'done'"), sqlite_where=text("status <> 'done'")),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    run_id: Mapped[str | None] = mapped_column(String(200))
    step: Mapped[int | None] = mapped_column(Integer)
    model: Mapped[str | None] = mapped_column(String(200))
    meta: Mapped[dict[str, Any] | None] = mapped_column(Json)
    variant_id: Mapped[str] = mapped_column(String(100))
    template: Mapped[str | None] = mapped_column(String(50))
    assembly_sha256: Mapped[str] = mapped_column(ForeignKey("assemblies.sha256"))
    completion: Mapped[bool] = mapped_column(Boolean, default=False)
    seed: Mapped[int] = mapped_column(BigInteger)
    # toolchain.verdict_cache.key of (variant, text, seed, ...): a done attempt with the same key
    # answers a new one without verifying it again.
    content_key: Mapped[str | None] = mapped_column(String(64))

    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    tries: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    worker: Mapped[str | None] = mapped_column(String(200))
    # Until when whoever holds this attempt (a queued message, a worker running it) is trusted
    # to finish it; past it, the sweeper looks for the attempt in the broker and re-queues it.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # From the verdict (store/extract.py); NULL until the attempt is done, and the cycle and
    # reward figures NULL for as long as the verifier does not report them.
    passed: Mapped[bool | None] = mapped_column(Boolean)
    error_kind: Mapped[str | None] = mapped_column(String(40))
    message: Mapped[str | None] = mapped_column(Text)
    reward: Mapped[float | None] = mapped_column(Float)
    reward_components: Mapped[dict[str, Any] | None] = mapped_column(Json)
    speedup: Mapped[float | None] = mapped_column(Float)
    cycles: Mapped[float | None] = mapped_column(Float)
    baseline_cycles: Mapped[float | None] = mapped_column(Float)
    listing_cycles: Mapped[float | None] = mapped_column(Float)
    baseline_compiler: Mapped[str | None] = mapped_column(String(40))
    verify_seconds: Mapped[float | None] = mapped_column(Float)
    verifier_version: Mapped[str | None] = mapped_column(String(40))
    sandbox: Mapped[str | None] = mapped_column(String(20))
    versions: Mapped[dict[str, Any] | None] = mapped_column(Json)
    verdict: Mapped[dict[str, Any] | None] = mapped_column(Json)


class GateResultRow(Base):
    __tablename__ = "gate_results"
    __table_args__ = (Index("ix_gate_results_name", "name", "passed"),)

    attempt_id: Mapped[str] = mapped_column(
        ForeignKey("attempts.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    passed: Mapped[bool] = mapped_column(Boolean)
    error_kind: Mapped[str | None] = mapped_column(String(40))
    message: Mapped[str | None] = mapped_column(Text)
    seconds: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any] | None] = mapped_column(Json)


class BaselineRow(Base):
    """A compiler's output for a variant, once per toolchain (compiler version and flags: the
    key toolchain/baselines.py caches under), with its cycles under the cost model once a worker
    has measured them. A new compiler gets new rows; old ones stay for the history."""

    __tablename__ = "baselines"

    variant_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    compiler: Mapped[str] = mapped_column(String(20), primary_key=True)
    opt: Mapped[str] = mapped_column(String(8), primary_key=True)
    toolchain_key: Mapped[str] = mapped_column(String(24), primary_key=True)
    toolchain: Mapped[str] = mapped_column(String(300))
    flags: Mapped[list[str]] = mapped_column(Json)
    c_source: Mapped[str] = mapped_column(Text)
    assembly: Mapped[str] = mapped_column(Text)
    # NULL until measured; a data-dependent baseline keeps NULL (its cost is per input: each
    # verdict carries the figure on its own input) with data_dependent true.
    cycles: Mapped[float | None] = mapped_column(Float)
    data_dependent: Mapped[bool | None] = mapped_column(Boolean)
    cost_model: Mapped[str | None] = mapped_column(String(24))
    built_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    measured_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
