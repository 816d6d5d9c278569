"""The record of each CSV import and the full list of its row errors and notices.

A million-row import cannot return every bad row in its response (that was a 58 MB reply),
and keeping them in memory until the end is what made it take a gigabyte. Each batch of
the import writes its rows' problems here, in the batch's own short transaction; the
response shows the first few and links to `GET /api/v1/cameras/import/{id}/errors`, which
pages through this table. An import is visible to its importer's unit and the units above
it (its `scope`, like a camera's unit path), never to a sibling.

Records older than `security.import_keep_days` are purged at the start of the next import,
a bounded slice at a time, so the purge never holds the database's write lock for long.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from config.database import Base, UTCDateTime, utcnow
from config.errors import NotFound
from registry.units import in_scope

#: The scope recorded for imports of the local CLI, which may write anywhere: no API user's
#: scope is a prefix of it, so only the CLI (which prints every error itself) lists them.
CLI_SCOPE = "/"
MESSAGE_MAX = 500
PURGE_SLICE = 5000


class CameraImport(Base):
    """One import run: who, where, how far it got, and its counts."""

    __tablename__ = "camera_imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(String(400), index=True)
    dry_run: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16))  # running, done, failed
    encoding: Mapped[str] = mapped_column(String(16))
    rows: Mapped[int] = mapped_column(Integer)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    credentials_dropped: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str | None] = mapped_column(String(500))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def summary(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (
            "id", "actor", "dry_run", "state", "encoding", "rows", "created", "updated", "unchanged",
            "credentials_dropped", "errors", "detail", "started_at", "finished_at")}


class CameraImportRow(Base):
    """A row of an import that was refused (`error`) or applied with a warning (`notice`)."""

    __tablename__ = "camera_import_rows"

    import_id: Mapped[int] = mapped_column(ForeignKey("camera_imports.id", ondelete="CASCADE"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(String(MESSAGE_MAX))


def visible(session: Session, import_id: int, scope: str) -> CameraImport:
    """The import, if the caller's scope covers the importer's unit; otherwise not found."""
    run = session.get(CameraImport, import_id)
    if run is None or not in_scope(run.scope, scope):
        raise NotFound(f"import {import_id} not found", import_id=import_id)
    return run


def problems(session: Session, import_id: int, after_line: int = 0, limit: int = 1000,
             kind: str | None = None) -> list[CameraImportRow]:
    """One page of an import's problem rows in line order, after `after_line`."""
    query = select(CameraImportRow).where(CameraImportRow.import_id == import_id, CameraImportRow.line > after_line)
    if kind is not None:
        query = query.where(CameraImportRow.kind == kind)
    return list(session.scalars(query.order_by(CameraImportRow.line).limit(limit)))


def purge(session: Session, keep_days: int) -> int:
    """Delete imports started more than `keep_days` ago, with their rows, a slice per
    transaction; the number of imports deleted."""
    cutoff = utcnow() - timedelta(days=keep_days)
    old = list(session.scalars(select(CameraImport.id).where(CameraImport.started_at < cutoff)))
    rows = CameraImportRow.__table__
    for import_id in old:
        while True:
            last = session.scalar(select(rows.c.line).where(rows.c.import_id == import_id)
                                  .order_by(rows.c.line).offset(PURGE_SLICE - 1).limit(1))
            query = delete(rows).where(rows.c.import_id == import_id)
            session.execute(query if last is None else query.where(rows.c.line <= last))
            session.commit()
            if last is None:
                break
        session.execute(delete(CameraImport).where(CameraImport.id == import_id))
        session.commit()
    return len(old)
