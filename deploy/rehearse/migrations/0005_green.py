"""rehearsal only: the green revision's expand step, a nullable column blue never names

Revision ID: 0005_rehearsal_expand
Revises: 0004_recommendation_token
Create Date: 2026-12-02 01:00:00.000000

Not part of the schema: deploy/rehearse/blue_green.py copies it into the green revision,
so the rollout runs blue (at 0004) against the schema green migrated to.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_rehearsal_expand"
down_revision = "0004_recommendation_token"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default needed: blue's INSERTs do not name it and keep working.
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rehearsal_note", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_column("rehearsal_note")
