"""Text search over the camera registry, through the indexes of migration 0002.

Name and address match as substrings (FTS5 trigram on SQLite for 3+ characters, pg_trgm
GIN indexes on PostgreSQL); a device id matches by prefix through its unique index. The
bulk importer pauses SQLite's row triggers and reindexes whole chunks instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, literal_column, or_, select, table, text
from sqlalchemy.orm import Session

from registry.cameras import Camera

_FTS = table("camera_search")
_ROWID = literal_column("rowid")


def _sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def text_match(session: Session, needle: str) -> Any:
    """A WHERE clause: `needle` inside the name or address, or starting the device id.

    Device ids are digits only (validated), so only an all-digit needle can start one; it is
    matched as a range so that the unique index serves it on both backends."""
    clauses = []
    if _sqlite(session) and len(needle) >= 3:
        phrase = '"' + needle.replace('"', '""') + '"'
        words = select(_ROWID).select_from(_FTS).where(literal_column("camera_search").op("MATCH")(phrase))
        clauses.append(Camera.id.in_(words))
    elif _sqlite(session):  # 1-2 characters: too short for trigrams; LIKE is case-blind for ASCII here
        clauses += [Camera.name.contains(needle, autoescape=True), Camera.address.contains(needle, autoescape=True)]
    else:
        clauses += [Camera.name.icontains(needle, autoescape=True), Camera.address.icontains(needle, autoescape=True)]
    if needle.isascii() and needle.isdigit() and len(needle) <= 20:
        clauses.append(and_(Camera.device_id >= needle, Camera.device_id < needle + "\x7f"))
    return or_(*clauses)


def pause_row_triggers(session: Session) -> None:
    """Inside the caller's transaction only: SQLite has one writer, so nobody else sees it."""
    if _sqlite(session):
        session.execute(text("INSERT INTO camera_search_paused (paused) VALUES (1)"))


def resume_row_triggers(session: Session) -> None:
    if _sqlite(session):
        session.execute(text("DELETE FROM camera_search_paused"))


def reindex(session: Session, camera_ids: Sequence[int]) -> None:
    """Bring the search rows of `camera_ids` up to date in two statements."""
    if not _sqlite(session) or not camera_ids:
        return
    ids = bindparam("ids", list(camera_ids), expanding=True)
    session.execute(text("DELETE FROM camera_search WHERE rowid IN :ids").bindparams(ids))
    session.execute(
        text("INSERT INTO camera_search(rowid, name, address) SELECT id, name, address FROM cameras WHERE id IN :ids")
        .bindparams(ids)
    )
