"""Alerts: the alert records, the events each merged (keyed by event id, so none is counted
twice), the ordered change feed every channel reads, and named counters (feed ids, case
numbers per unit and day, the alert engine's turn).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import config.database

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('counters',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_counters'))
    )
    op.create_table('alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('severity_rank', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('camera_id', sa.Integer(), nullable=True),
    sa.Column('camera_ids', sa.JSON(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('level_unit_id', sa.Integer(), nullable=False),
    sa.Column('addressed', sa.JSON(), nullable=False),
    sa.Column('escalations', sa.Integer(), nullable=False),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('event_count', sa.Integer(), nullable=False),
    sa.Column('first_at', config.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_at', config.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('snapshot', sa.String(length=500), nullable=True),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('level_since', config.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ack_due_at', config.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolve_due_at', config.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_at', config.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('dispatched_at', config.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_at', config.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('assignee', sa.String(length=200), nullable=True),
    sa.Column('feedback', sa.Text(), nullable=True),
    sa.Column('evidence_file', sa.String(length=500), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_at', config.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', config.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_alerts_camera_id_cameras'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['level_unit_id'], ['units.id'], name=op.f('fk_alerts_level_unit_id_units')),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_alerts_unit_id_units')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    sa.UniqueConstraint('code', name=op.f('uq_alerts_code'))
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alerts_ack_due_at'), ['ack_due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_level_unit_id'), ['level_unit_id'], unique=False)
        batch_op.create_index('ix_alerts_open_camera', ['camera_id', 'kind', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_resolve_due_at'), ['resolve_due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_state'), ['state'], unique=False)
        batch_op.create_index('ix_alerts_unit_state', ['unit_id', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_updated_at'), ['updated_at'], unique=False)

    op.create_table('alert_changes',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('change', sa.String(length=32), nullable=False),
    sa.Column('at', config.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('unit_path', sa.String(length=400), nullable=False),
    sa.Column('addressed', sa.JSON(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('severity_rank', sa.Integer(), nullable=False),
    sa.Column('alert', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_alert_changes_alert_id_alerts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_changes'))
    )
    with op.batch_alter_table('alert_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_changes_alert_id'), ['alert_id'], unique=False)

    op.create_table('alert_events',
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=False),
    sa.Column('camera_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('at', config.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_alert_events_alert_id_alerts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_alert_events'))
    )
    with op.batch_alter_table('alert_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_events_alert_id'), ['alert_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('alert_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_events_alert_id'))

    op.drop_table('alert_events')
    with op.batch_alter_table('alert_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_changes_alert_id'))

    op.drop_table('alert_changes')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alerts_updated_at'))
        batch_op.drop_index('ix_alerts_unit_state')
        batch_op.drop_index(batch_op.f('ix_alerts_state'))
        batch_op.drop_index(batch_op.f('ix_alerts_resolve_due_at'))
        batch_op.drop_index('ix_alerts_open_camera')
        batch_op.drop_index(batch_op.f('ix_alerts_level_unit_id'))
        batch_op.drop_index(batch_op.f('ix_alerts_kind'))
        batch_op.drop_index(batch_op.f('ix_alerts_ack_due_at'))

    op.drop_table('alerts')
    op.drop_table('counters')
