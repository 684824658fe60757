"""exact counters

Revision ID: 0003_counters
Revises: 0002
Create Date: 2026-12-01 21:20:00

The `counter` table keeps exact totals that writers bump in their own transactions; the
test-response total is seeded here from COUNT(*). Stop writers of older versions before
upgrading: a submission they store after this migration is not counted.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_counters"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "counter",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_counter")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
        mysql_engine="InnoDB",
    )
    op.execute(
        "INSERT INTO counter (name, value) SELECT 'test_response', COUNT(*) FROM test_response"
    )


def downgrade() -> None:
    op.drop_table("counter")
