"""Index cameras by ONVIF host, so that probe and discovery can tell registered devices
from new ones without scanning the registry.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cameras_onvif_host", "cameras", ["onvif_host"])


def downgrade() -> None:
    op.drop_index("ix_cameras_onvif_host", table_name="cameras")
