"""The audit log becomes a hash chain: every row carries its own hash and its predecessor's,
and `audit_head` holds the last row's id and hash (its row lock serialises appends).

Rows written before this revision are numbered densely in their order and chained, so a
database that is upgraded verifies like a new one from here on.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from registry.audit import GENESIS, row_digest

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_log = sa.table(
    "audit_log", sa.column("id", sa.Integer), sa.column("prev_hash", sa.String), sa.column("row_hash", sa.String))


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("row_hash", sa.String(64), nullable=False, server_default=""))
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    from registry.audit import AuditEntry  # the mapped table reads JSON and times as the chain hashes them

    conn = op.get_bind()
    digest, number = GENESIS, 0
    for row in conn.execute(sa.select(AuditEntry.__table__).order_by(AuditEntry.__table__.c.id)).mappings().all():
        number += 1
        values = dict(row, id=number)
        new_hash = row_digest(digest, values)
        conn.execute(_log.update().where(_log.c.id == row["id"]).values(id=number, prev_hash=digest, row_hash=new_hash))
        digest = new_hash
    conn.execute(sa.text("INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, :n, :h)"),
                 {"n": number, "h": digest})


def downgrade() -> None:
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("row_hash")
        batch.drop_column("prev_hash")
