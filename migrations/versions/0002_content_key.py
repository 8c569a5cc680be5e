"""Content-addressed verdicts: attempts.content_key and its index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("attempts", sa.Column("content_key", sa.String(length=64), nullable=True))
    op.create_index("ix_attempts_content_key", "attempts", ["content_key"])


def downgrade() -> None:
    op.drop_index("ix_attempts_content_key", table_name="attempts")
    op.drop_column("attempts", "content_key")
