"""Substring search over camera name and address, indexed on both backends.

SQLite: an FTS5 table with the trigram tokenizer (rowid = camera id), kept in step with
`cameras` by triggers. A bulk import pauses the triggers inside its own transaction (a row
in `camera_search_paused`) and reindexes each chunk with one INSERT ... SELECT, which is
twenty times faster than row triggers; see `registry.camera_search`.
PostgreSQL: pg_trgm GIN indexes, which serve ILIKE '%text%' directly.
Device ids are matched by prefix through their unique B-tree index instead.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ACTIVE = "WHEN NOT EXISTS (SELECT 1 FROM camera_search_paused)"
SQLITE_UP = [
    "CREATE VIRTUAL TABLE camera_search USING fts5(name, address, tokenize='trigram')",
    "CREATE TABLE camera_search_paused (paused INTEGER NOT NULL)",
    f"""CREATE TRIGGER camera_search_insert AFTER INSERT ON cameras {ACTIVE} BEGIN
           INSERT INTO camera_search(rowid, name, address) VALUES (new.id, new.name, new.address);
       END""",
    f"""CREATE TRIGGER camera_search_delete AFTER DELETE ON cameras {ACTIVE} BEGIN
           DELETE FROM camera_search WHERE rowid = old.id;
       END""",
    f"""CREATE TRIGGER camera_search_update AFTER UPDATE OF name, address ON cameras {ACTIVE} BEGIN
           DELETE FROM camera_search WHERE rowid = old.id;
           INSERT INTO camera_search(rowid, name, address) VALUES (new.id, new.name, new.address);
       END""",
    "INSERT INTO camera_search(rowid, name, address) SELECT id, name, address FROM cameras",
]
POSTGRES_UP = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_cameras_name_trgm ON cameras USING gin (name gin_trgm_ops)",
    "CREATE INDEX ix_cameras_address_trgm ON cameras USING gin (address gin_trgm_ops)",
]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_UP if dialect == "sqlite" else POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS camera_search_{name}")
        op.execute("DROP TABLE IF EXISTS camera_search_paused")
        op.execute("DROP TABLE IF EXISTS camera_search")
    else:
        for column in ("name", "address"):
            op.execute(f"DROP INDEX IF EXISTS ix_cameras_{column}_trgm")
