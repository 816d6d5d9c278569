"""`/api/v1/audit`: the append-only, hash-chained record of every write and every alert action,
for admins of the unit concerned (`lookout audit verify` checks the chain)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import or_, select

from api.deps import Moment, SessionDep, require
from api.schemas.audit import AuditPage
from registry.audit import AuditEntry
from registry.fields import DbId, Text, decode_cursor, encode_cursor
from registry.units import subtree_ids
from registry.users import USER_ADMINS, Principal

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
Admin = Annotated[Principal, Depends(require(USER_ADMINS))]


@router.get("", response_model=AuditPage)
def list_audit(
    admin: Admin,
    session: SessionDep,
    actor: Annotated[Text | None, Query()] = None,
    action: Annotated[Text | None, Query(description="e.g. camera.update; a prefix such as camera. works")] = None,
    target_type: Annotated[Text | None, Query()] = None,
    target_id: Annotated[DbId | None, Query()] = None,
    alert: Annotated[DbId | None, Query(description="every step of this alert")] = None,
    since: Annotated[Moment | None, Query(description="recorded at or after this time")] = None,
    until: Annotated[Moment | None, Query(description="recorded before this time")] = None,
    cursor: Annotated[str | None, Query(max_length=64, description="newest first; continue before this entry")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, object]:
    scope_filter = AuditEntry.unit_id.in_(subtree_ids(admin.scope))
    if admin.scope.count("/") == 1:  # a root administrator also sees entries bound to no unit
        scope_filter = or_(scope_filter, AuditEntry.unit_id.is_(None))
    query = select(AuditEntry).where(scope_filter)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(AuditEntry.action.startswith(action, autoescape=True))
    if target_type:
        query = query.where(AuditEntry.target_type == target_type)
    if target_id is not None:
        query = query.where(AuditEntry.target_id == target_id)
    if alert is not None:
        query = query.where(AuditEntry.target_type == "alert", AuditEntry.target_id == alert)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    if cursor:
        query = query.where(AuditEntry.id < decode_cursor(cursor))
    rows = list(session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": rows, "next_cursor": encode_cursor(rows[-1].id) if more and rows else None}
