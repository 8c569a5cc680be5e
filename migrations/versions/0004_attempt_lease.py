"""Attempt leases: attempts.lease_until, the time after which the sweeper may re-queue an
attempt that is not done (workers/sweeper.py), and its partial index.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OUTSTANDING = sa.text("status <> 'done'")


def upgrade() -> None:
    op.add_column("attempts", sa.Column("lease_until", sa.DateTime(timezone=True),
                                        nullable=True))
    op.create_index("ix_attempts_lease", "attempts", ["lease_until"],
                    postgresql_where=OUTSTANDING, sqlite_where=OUTSTANDING)


def downgrade() -> None:
    op.drop_index("ix_attempts_lease", table_name="attempts")
    op.drop_column("attempts", "lease_until")
