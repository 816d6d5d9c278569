"""CSV imports: one record per import run (who, whose scope, counts, state) and the full
list of its refused rows and notices, written batch by batch while it runs, so that a
million-row import answers with its first errors and a link instead of all of them.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import config.database

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('camera_imports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('scope', sa.String(length=400), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('encoding', sa.String(length=16), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('created', sa.Integer(), nullable=False),
    sa.Column('updated', sa.Integer(), nullable=False),
    sa.Column('unchanged', sa.Integer(), nullable=False),
    sa.Column('credentials_dropped', sa.Integer(), nullable=False),
    sa.Column('errors', sa.Integer(), nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=True),
    sa.Column('started_at', config.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', config.database.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_camera_imports'))
    )
    with op.batch_alter_table('camera_imports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_camera_imports_scope'), ['scope'], unique=False)
        batch_op.create_index(batch_op.f('ix_camera_imports_started_at'), ['started_at'], unique=False)

    op.create_table('camera_import_rows',
    sa.Column('import_id', sa.Integer(), nullable=False),
    sa.Column('line', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('message', sa.String(length=500), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['camera_imports.id'],
                            name=op.f('fk_camera_import_rows_import_id_camera_imports'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('import_id', 'line', name=op.f('pk_camera_import_rows'))
    )


def downgrade() -> None:
    op.drop_table('camera_import_rows')
    with op.batch_alter_table('camera_imports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_camera_imports_started_at'))
        batch_op.drop_index(batch_op.f('ix_camera_imports_scope'))

    op.drop_table('camera_imports')
