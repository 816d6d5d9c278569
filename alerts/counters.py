"""Named counters in the database: the feed's ids, each unit's case numbers per day, and the
alert engine's turn.

`take` updates the counter's row before it reads it, so the caller holds that row's lock
(PostgreSQL's row lock, SQLite's write lock) until its transaction ends: numbers are handed
out without gaps and in commit order, which is what lets readers of the feed go by id.
"""

from __future__ import annotations

from sqlalchemy import Integer, String, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from config.database import Base


class Counter(Base):
    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


def take(session: Session, name: str, count: int = 1) -> int:
    """Advance counter `name` by `count` (0 only locks it) and return its new value; the
    numbers `value - count + 1 .. value` are the caller's."""
    conn = session.connection()
    table = Counter.__table__
    bump = update(table).where(table.c.name == name).values(value=table.c.value + count)
    if conn.execute(bump).rowcount != 1:
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(insert(table).values(name=name, value=0).on_conflict_do_nothing())
        conn.execute(bump)
    return int(conn.execute(select(table.c.value).where(table.c.name == name)).scalar_one())


def move_to(session: Session, name: str, value: int) -> None:
    """Set counter `name` (a reader's cursor) to `value`; the caller took it first."""
    table = Counter.__table__
    session.connection().execute(update(table).where(table.c.name == name).values(value=value))
