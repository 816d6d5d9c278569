"""The relational database: declarative base, engine and sessions.

SQLite (the default, one file in the data folder, WAL mode so readers never wait for the
writer) and PostgreSQL (by URL) are both first-class: the test suite runs against both.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from config.private_files import private_dir, private_file, tighten_file

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table, with constraint names Alembic can track."""

    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite stores no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # a caller's naive time is read as UTC
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


#: what a database that is down, unreachable or out of connections raises: whoever meets it
#: waits and tries the same work again (it says nothing about the work itself)
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)
#: SQLSTATEs of a server that is up but cannot take writes now: a hot standby after a failover
#: ("read-only transaction"), a server shutting down or starting up
NOT_WRITABLE_NOW = frozenset({"25006", "57P01", "57P02", "57P03"})


def database_down(exc: BaseException) -> bool:
    """True when `exc` says the database is away, not that the work was wrong: one of
    `DATABASE_DOWN`, a connection the driver found dead (`connection_invalidated`, whatever
    class it came as), or a server that will not write now (a standby). Work that failed so is
    retried whole, never set aside as bad."""
    if isinstance(exc, DATABASE_DOWN):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    return bool(exc.connection_invalidated) or getattr(exc.orig, "sqlstate", None) in NOT_WRITABLE_NOW


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB: index pages of 100k+ cameras stay in memory
    cursor.close()


def make_engine(url: str) -> Engine:
    """Engine for `url`; SQLite gets WAL, foreign keys and its folder created.

    The SQLite file is made 0600 before SQLite opens it (its folder 0700 when made here), and
    an older install's file is tightened: SQLite gives the WAL, shared-memory and journal
    files the mode of the database file, so the database stays its user's alone."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            database = Path(parsed.database)
            private_dir(database.parent, tighten_existing=False)
            private_file(database)
            for suffix in ("-wal", "-shm", "-journal"):
                tighten_file(database.with_name(database.name + suffix))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
