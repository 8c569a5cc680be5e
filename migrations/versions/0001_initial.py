"""Initial schema: api keys, assemblies, attempts, batches, gate results, and the views.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from store.views import VIEWS

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
OUTSTANDING = sa.text("status <> 'done'")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("scopes", sa.String(length=64), nullable=False),
        _ts("created_at"),
        _ts("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_table(
        "assemblies",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("run_id", sa.String(length=200), nullable=True),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("meta", JSON, nullable=True),
        sa.Column("variant_id", sa.String(length=100), nullable=False),
        sa.Column("template", sa.String(length=50), nullable=True),
        sa.Column("assembly_sha256", sa.String(length=64), nullable=False),
        sa.Column("completion", sa.Boolean(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        _ts("created_at"),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("error_kind", sa.String(length=40), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("reward_components", JSON, nullable=True),
        sa.Column("speedup", sa.Float(), nullable=True),
        sa.Column("cycles", sa.Float(), nullable=True),
        sa.Column("baseline_cycles", sa.Float(), nullable=True),
        sa.Column("listing_cycles", sa.Float(), nullable=True),
        sa.Column("baseline_compiler", sa.String(length=40), nullable=True),
        sa.Column("verify_seconds", sa.Float(), nullable=True),
        sa.Column("verifier_version", sa.String(length=40), nullable=True),
        sa.Column("sandbox", sa.String(length=20), nullable=True),
        sa.Column("versions", JSON, nullable=True),
        sa.Column("verdict", JSON, nullable=True),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"]),
        sa.ForeignKeyConstraint(["assembly_sha256"], ["assemblies.sha256"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("api_key_id", "idempotency_key", name="uq_attempts_key"),
    )
    op.create_index("ix_attempts_created", "attempts", ["created_at", "id"])
    op.create_index("ix_attempts_error_kind", "attempts", ["error_kind"])
    op.create_index("ix_attempts_outstanding", "attempts", ["status"],
                    postgresql_where=OUTSTANDING, sqlite_where=OUTSTANDING)
    op.create_index("ix_attempts_run_step", "attempts", ["run_id", "step"])
    op.create_index("ix_attempts_variant_passed", "attempts", ["variant_id", "passed"])
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("run_id", sa.String(length=200), nullable=True),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        _ts("created_at"),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("api_key_id", "idempotency_key", name="uq_batches_key"),
    )
    op.create_table(
        "batch_items",
        sa.Column("batch_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(["attempt_id"], ["attempts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("batch_id", "position"),
    )
    op.create_index("ix_batch_items_attempt", "batch_items", ["attempt_id"])
    op.create_table(
        "gate_results",
        sa.Column("attempt_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("error_kind", sa.String(length=40), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("details", JSON, nullable=True),
        sa.ForeignKeyConstraint(["attempt_id"], ["attempts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("attempt_id", "position"),
    )
    op.create_index("ix_gate_results_name", "gate_results", ["name", "passed"])
    # The views of revision 0001; a later change to store/views.py needs a revision that drops
    # and recreates the view it changes.
    for sql in VIEWS.values():
        op.execute(sql)


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table("gate_results")
    op.drop_table("batch_items")
    op.drop_table("batches")
    op.drop_table("attempts")
    op.drop_table("assemblies")
    op.drop_table("api_keys")
