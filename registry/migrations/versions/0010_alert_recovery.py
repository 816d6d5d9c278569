"""Alerts: `clears_at`, when the offline alert of a camera that is back online closes itself
unless the camera drops again first (one alert per flapping camera, not one per outage).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import config.database

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('clears_at', config.database.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_alerts_clears_at'), ['clears_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alerts_clears_at'))
        batch_op.drop_column('clears_at')
