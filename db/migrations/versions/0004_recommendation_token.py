"""recommendation token: the SHA-256 of the token that owns a recommendation's survey

Revision ID: 0004_recommendation_token
Revises: 0003_counters
Create Date: 2026-12-01 21:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_recommendation_token"
down_revision = "0003_counters"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows from before it have no token (README, "Survey ownership").
    with op.batch_alter_table("recommendation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recommendation", schema=None) as batch_op:
        batch_op.drop_column("token_sha256")
