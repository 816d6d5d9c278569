"""Per-camera detection rules (zones, thresholds, persistence, cooldown, armed hours, crowd
levels) as validated JSON beside the camera; NULL: the camera takes the defaults.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cameras", sa.Column("detection_rules", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("cameras", "detection_rules")
