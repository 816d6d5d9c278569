"""The append-only audit table: who did what, when, to what, with before and after.

Every write of the registry and every alert action adds rows here through `record` /
`record_many`; nothing in Lookout updates or deletes them. Each row carries the SHA-256 of
its own content and of the row before it, and `audit_head` holds the id and hash of the last
row, so `verify_chain` finds a row that was edited, deleted in the middle or cut off the end.
The head lives in the database too, so a cut or rewrite that also moves the head is found only
against signed checkpoints of the head kept outside the database (registry.audit_checkpoints),
which `verify_chain` takes as anchors.

Writers are serialised on the head row: an append first updates it (which takes PostgreSQL's
row lock, or SQLite's write lock, before anything is read), then reads the head, numbers its
rows after it and chains them. Ids are therefore given here, without gaps, so a missing id
is a deleted row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import JSON, Integer, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from config.database import Base, UTCDateTime, utcnow
from config.errors import LookoutError

GENESIS = "0" * 64
#: The columns a row's hash covers, in this order.
CHAINED = ("id", "at", "actor", "action", "target_type", "target_id", "unit_id", "before", "after")


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[int | None] = mapped_column(Integer, index=True)
    unit_id: Mapped[int | None] = mapped_column(Integer, index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row (id 1): the last audit row's id and hash. Its lock is the append lock."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))


class AuditChainError(LookoutError):
    """The chain head is missing: the log cannot be appended to until someone looks."""


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def jsonable(snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
    """The snapshot as it reads back from a JSON column (dates as text, keys as strings),
    so that the hash taken now is the hash `verify_chain` computes from the stored row."""
    if snapshot is None:
        return None
    return json.loads(json.dumps(snapshot, default=_iso))  # type: ignore[no-any-return]


def row_digest(prev_hash: str, row: dict[str, Any]) -> str:
    """SHA-256 over the previous row's hash and this row's chained columns."""
    content = [row[name] for name in CHAINED]
    content[1] = _iso(content[1])
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(f"{prev_hash}\n{text}".encode()).hexdigest()


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
    record_many(session, [audit_row(actor, action, target_type, target_id, unit_id, before, after)])


def record_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Append rows made by `audit_row` to the chain, in order, inside the caller's transaction.

    The head row stays locked until that transaction ends, so keep audit writes at the end
    of long transactions (the CSV import writes its rows per chunk, after the cameras)."""
    if not rows:
        return
    conn = session.connection()
    head = AuditHead.__table__
    locked = conn.execute(update(head).where(head.c.id == 1).values(last_id=head.c.last_id))
    if locked.rowcount != 1:
        raise AuditChainError("the audit chain head (table audit_head) is missing; run `lookout audit verify`")
    last_id, digest = conn.execute(select(head.c.last_id, head.c.last_hash).where(head.c.id == 1)).one()
    for offset, row in enumerate(rows, 1):
        row["id"] = last_id + offset
        row["prev_hash"] = digest
        row["row_hash"] = digest = row_digest(digest, row)
    conn.execute(AuditEntry.__table__.insert(), rows)
    conn.execute(update(head).where(head.c.id == 1).values(last_id=rows[-1]["id"], last_hash=digest))


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What `verify_chain` found: rows checked, the head, and the first bad row if any."""

    rows: int
    head_id: int
    head_hash: str
    bad_row: int | None = None
    reason: str | None = None

    @property
    def intact(self) -> bool:
        return self.reason is None


def _stored_rows(session: Session, batch: int) -> Iterator[dict[str, Any]]:
    table = AuditEntry.__table__
    after = 0
    while True:
        chunk = session.execute(
            select(table).where(table.c.id > after).order_by(table.c.id).limit(batch)).mappings().all()
        if not chunk:
            return
        yield from chunk
        after = chunk[-1]["id"]


@dataclass(frozen=True, slots=True)
class Anchor:
    """A row's id and hash as a signed checkpoint saw them (registry.audit_checkpoints), and the
    words that name that checkpoint in a report."""

    row_id: int
    row_hash: str
    label: str


def verify_chain(session: Session, batch: int = 5000, anchors: Sequence[Anchor] = ()) -> ChainReport:
    """Walk the log in id order and recompute every hash; stop at the first row that does not
    hold (edited, deleted, or chained to the wrong predecessor), then check the head.

    The head lives in the same database as the rows, so someone who can write there can cut
    rows off the end and move the head back, or rewrite a row and every hash after it, and the
    chain alone still holds. `anchors` (from checkpoints kept outside the database) close
    that: each anchored row must exist with the anchored hash, so the log must reach at least
    the highest anchored row."""
    head = session.get(AuditHead, 1)
    by_row: dict[int, list[Anchor]] = {}
    for anchor in anchors:
        if anchor.row_id > 0:
            by_row.setdefault(anchor.row_id, []).append(anchor)
    held = 0  # the last row an anchor confirmed: a rewrite found at an anchor lies after it
    expected_id, digest, count = 1, GENESIS, 0
    for row in _stored_rows(session, batch):
        if row["id"] != expected_id:
            return ChainReport(count, row["id"], digest, expected_id,
                               f"row {expected_id} is missing (the log jumps from {expected_id - 1} to {row['id']})")
        if row["prev_hash"] != digest:
            if row_digest(row["prev_hash"], dict(row)) == row["row_hash"] and count:
                # this row still holds the true hash of its predecessor: that one was rewritten, hash and all
                return ChainReport(count - 1, row["id"] - 1, digest, row["id"] - 1,
                                   f"row {row['id'] - 1} was rewritten together with its hash "
                                   f"(row {row['id']} still links to the original)")
            return ChainReport(count, row["id"], digest, row["id"],
                               f"row {row['id']} does not link to row {row['id'] - 1} (its prev_hash was changed)")
        if row_digest(digest, dict(row)) != row["row_hash"]:
            return ChainReport(count, row["id"], digest, row["id"],
                               f"row {row['id']} was changed after it was written (its hash does not match)")
        for anchor in by_row.get(row["id"], ()):
            if anchor.row_hash != row["row_hash"]:
                return ChainReport(count, row["id"], digest, row["id"],
                                   f"row {row['id']} is not the row {anchor.label} signed: one of rows "
                                   f"{held + 1} to {row['id']} was rewritten or replaced, and every later hash "
                                   "and the head recomputed")
        if row["id"] in by_row:
            held = row["id"]
        digest = row["row_hash"]
        expected_id += 1
        count += 1
    last = expected_id - 1
    if head is None:
        return ChainReport(count, last, digest, None, "the chain head (table audit_head) is missing")
    if head.last_id != last or head.last_hash != digest:
        if head.last_id > last:
            return ChainReport(count, last, digest, last + 1,
                               f"row {last + 1} is missing: the head says the log ends at row {head.last_id}")
        return ChainReport(count, last, digest, last,
                           f"the head (row {head.last_id}) does not match the last row {last}")
    beyond = [a for a in anchors if a.row_id > last]
    if beyond:
        furthest = max(beyond, key=lambda a: a.row_id)
        return ChainReport(count, last, digest, last + 1,
                           f"row {last + 1} is missing: {furthest.label} signed the log up to row "
                           f"{furthest.row_id}, but it ends at row {last} (rows were deleted from the end "
                           "and the head moved back onto the last row left)")
    return ChainReport(count, last, digest)
