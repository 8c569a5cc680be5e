"""Compiler baselines in the database: one row per variant, compiler, level and toolchain.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "baselines",
        sa.Column("variant_id", sa.String(length=100), nullable=False),
        sa.Column("compiler", sa.String(length=20), nullable=False),
        sa.Column("opt", sa.String(length=8), nullable=False),
        sa.Column("toolchain_key", sa.String(length=24), nullable=False),
        sa.Column("toolchain", sa.String(length=300), nullable=False),
        sa.Column("flags", JSON, nullable=False),
        sa.Column("c_source", sa.Text(), nullable=False),
        sa.Column("assembly", sa.Text(), nullable=False),
        sa.Column("cycles", sa.Float(), nullable=True),
        sa.Column("data_dependent", sa.Boolean(), nullable=True),
        sa.Column("cost_model", sa.String(length=24), nullable=True),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("variant_id", "compiler", "opt", "toolchain_key"),
    )


def downgrade() -> None:
    op.drop_table("baselines")
