"""rehearsal only: a release whose migration fails, so it never becomes ready

Revision ID: 0005_rehearsal_broken
Revises: 0004_recommendation_token
Create Date: 2026-12-02 01:00:00.000000

deploy/rehearse/blue_green.py copies it into the "bad green" revision: `hollang serve`
fails at start-up, ValidateService fails, and that fleet must never receive traffic.
"""

from __future__ import annotations

revision = "0005_rehearsal_broken"
down_revision = "0004_recommendation_token"
branch_labels = None
depends_on = None


def upgrade() -> None:
    raise RuntimeError("rehearsal: this release's migration fails on purpose")


def downgrade() -> None:
    pass
