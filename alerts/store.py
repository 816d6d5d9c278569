"""Reading and acting on alerts inside a caller's unit scope: the data layer of the routes.

An alert is visible to a person whose unit is the alert's owner unit or above it; outside
that scope it does not exist for them (404), whichever channel they ask through.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import redis
from sqlalchemy import Select, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from alerts import feed, teaching
from alerts.lifecycle import ActionInput, apply
from alerts.model import OPEN_STATES, Alert, AlertEvent
from alerts.policy import AlertPolicy
from config.database import utcnow
from config.errors import Conflict, NotFound
from registry import audit
from registry.audit import AuditEntry
from registry.units import Unit, get_unit, in_scope, subtree_ids


def get_alert(session: Session, alert_id: int, scope: str) -> tuple[Alert, str]:
    """The alert and its owner unit's path; 404 when it is missing or outside `scope`."""
    row = session.execute(select(Alert, Unit.path).join(Unit, Unit.id == Alert.unit_id)
                          .where(Alert.id == alert_id)).first()
    if row is None or not in_scope(row[1], scope):
        raise NotFound(f"alert {alert_id} not found", alert_id=alert_id)
    return row[0], row[1]


@dataclass(frozen=True, slots=True)
class AlertFilter:
    states: list[str]
    kinds: list[str]
    min_severity: int | None = None
    unit_id: int | None = None
    camera_id: int | None = None
    open_only: bool = False
    since: datetime | None = None
    until: datetime | None = None
    updated_since: datetime | None = None


def alert_query(session: Session, scope: str, flt: AlertFilter) -> Select[tuple[Alert]]:
    query = select(Alert).where(Alert.unit_id.in_(subtree_ids(scope)))
    if flt.unit_id is not None:
        unit = get_unit(session, flt.unit_id, scope)
        query = query.where(Alert.unit_id.in_(subtree_ids(unit.path)))
    if flt.states:
        query = query.where(Alert.state.in_(flt.states))
    if flt.open_only:
        query = query.where(Alert.state.in_(OPEN_STATES))
    if flt.kinds:
        query = query.where(Alert.kind.in_(flt.kinds))
    if flt.min_severity is not None:
        query = query.where(Alert.severity_rank >= flt.min_severity)
    if flt.camera_id is not None:
        query = query.where(Alert.camera_id == flt.camera_id)
    if flt.since is not None:
        query = query.where(Alert.created_at >= flt.since)
    if flt.until is not None:
        query = query.where(Alert.created_at < flt.until)
    if flt.updated_since is not None:
        query = query.where(Alert.updated_at >= flt.updated_since)
    return query


def list_alerts(session: Session, scope: str, flt: AlertFilter, before_id: int | None, limit: int
                ) -> tuple[list[Alert], bool]:
    """Newest first; (page, whether more follow)."""
    query = alert_query(session, scope, flt)
    if before_id is not None:
        query = query.where(Alert.id < before_id)
    rows = list(session.scalars(query.order_by(Alert.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def events_of(session: Session, alert: Alert, limit: int) -> list[AlertEvent]:
    return list(session.scalars(select(AlertEvent).where(AlertEvent.alert_id == alert.id)
                                .order_by(AlertEvent.at, AlertEvent.event_id).limit(limit)))


def history_of(session: Session, alert: Alert) -> list[AuditEntry]:
    """Every recorded step of the alert, oldest first (from the audit chain)."""
    return list(session.scalars(select(AuditEntry).where(AuditEntry.target_type == "alert",
                                                         AuditEntry.target_id == alert.id).order_by(AuditEntry.id)))


def act(sessions: Callable[[], Session], alert_id: int, action: str, actor: str, given: ActionInput,
        policy: AlertPolicy, scope: str, client: redis.Redis | None, attempts: int = 3) -> Alert:
    """Do `action` and commit it with its feed change and audit row. When the engine or
    someone else changed the alert meanwhile, read it again and retry (the state may then
    refuse the action: a 409 naming the state)."""
    for attempt in range(attempts):
        with sessions() as session:
            alert, path = get_alert(session, alert_id, scope)
            before = alert.state
            change, row = apply(alert, action, actor, given, policy, path, utcnow())
            try:
                session.flush()
                lesson = teaching.learn(session, alert, action, before, actor, scope)  # false alarms teach the cameras
                last = feed.append(session, [change])
                audit.record_many(session, [row, *lesson.audit])
                session.commit()
            except StaleDataError:
                session.rollback()
                continue
            feed.ring(client, last)
            teaching.tell_workers(client, lesson)
            return alert
    raise Conflict(f"alert {alert_id} kept changing while {action} was applied; try again", alert_id=alert_id)
