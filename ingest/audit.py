"""The append-only audit table: who did what, when, to what, with before and after.

Every write of the registry (and later every alert action) adds rows here through
`record` / `record_many`; nothing in Lookout updates or deletes them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from config.database import Base, UTCDateTime, utcnow


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[int | None] = mapped_column(Integer, index=True)
    unit_id: Mapped[int | None] = mapped_column(Integer, index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


def jsonable(snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
    if snapshot is None:
        return None
    return {k: v.isoformat() if isinstance(v, (datetime, date)) else v for k, v in snapshot.items()}


def audit_row(
    actor: str,
    action: str,
    target_type: str,
    target_id: int | None,
    unit_id: int | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "at": utcnow(),
        "actor": actor,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "unit_id": unit_id,
        "before": jsonable(before),
        "after": jsonable(after),
    }


def record(session: Session, actor: str, action: str, target_type: str, target_id: int | None,
           unit_id: int | None, before: dict[str, Any] | None = None,
           after: dict[str, Any] | None = None) -> None:
    session.execute(insert(AuditEntry), [audit_row(actor, action, target_type, target_id, unit_id, before, after)])


def record_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Bulk insert of rows made by `audit_row` (a bulk import writes one per camera)."""
    if rows:
        session.connection().execute(AuditEntry.__table__.insert(), rows)
