"""Per-camera suppressions: the false alarms operators taught a camera by marking an alert
`false_alarm` (registry.suppressions); they go with their camera.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import config.database

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('camera_suppressions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('camera_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('box', sa.JSON(), nullable=False),
    sa.Column('appearance', sa.JSON(), nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', config.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.Column('last_hit_at', config.database.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'],
                            name=op.f('fk_camera_suppressions_camera_id_cameras'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_camera_suppressions'))
    )
    with op.batch_alter_table('camera_suppressions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_camera_suppressions_camera_id'), ['camera_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_camera_suppressions_alert_id'), ['alert_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('camera_suppressions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_camera_suppressions_alert_id'))
        batch_op.drop_index(batch_op.f('ix_camera_suppressions_camera_id'))
    op.drop_table('camera_suppressions')
