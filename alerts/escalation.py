"""The deadline sweep: alerts nobody acknowledged or resolved in time go up one level, and
offline alerts whose camera has stayed back online for the recovery time close (`outages`).

Deadlines are columns of the alert rows, so the sweep needs no memory of its own: any engine
process, started at any time, escalates what is overdue. Two sweeps racing over one alert
cannot both escalate it: the second write fails its version check and is dropped.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from alerts import feed
from alerts.lifecycle import ActionInput, apply, overdue
from alerts.model import OPEN_STATES, Alert, AlertState
from alerts.outages import clear_recovered, registry_back
from alerts.policy import AlertPolicy, level_index, path_ids
from registry import audit
from registry.units import Unit

ACTOR = "system:deadline"
LOG_NAMES = {"escalated": "alert_escalated", "overdue": "alert_overdue", "resolved": "alert_recovered"}
log = logging.getLogger("lookout.alerts")


def due_alerts(session: Session, now: datetime, limit: int) -> list[tuple[Alert, str]]:
    """Open alerts with a passed deadline, with their owner unit's path."""
    passed = or_(and_(Alert.state == AlertState.new.value, Alert.ack_due_at <= now),
                 and_(Alert.state.in_(OPEN_STATES), Alert.resolve_due_at <= now))
    rows = session.execute(select(Alert, Unit.path).join(Unit, Unit.id == Alert.unit_id).where(passed)
                           .order_by(Alert.id).limit(limit))
    return [(alert, path) for alert, path in rows]


def sweep(session: Session, policy: AlertPolicy, now: datetime, limit: int = 200, recoveries: bool = True) -> int:
    """Start the recovery clock of offline alerts whose camera the registry says is back, close
    the offline alerts whose camera has stayed back long enough (unless `recoveries` is False:
    the caller is still reading a backlog that may hold their next outage), then escalate every
    overdue alert (or mark it overdue at the top); the feed's last id, 0 if nothing was due or
    another process got there first."""
    changes, rows = [], []
    try:
        # quiet changes (no feed entry): a clock that starts is worth no notification
        clocks = registry_back(session, now, policy.settings.offline_recovery_seconds, limit)
        for change, row in clear_recovered(session, now, limit) if recoveries else ():
            changes.append(change)
            rows.append(row)
        for alert, path in due_alerts(session, now, limit):  # (what was just closed is no longer due)
            missed = overdue(alert, now)
            level = level_index(path_ids(path), alert.level_unit_id)
            if level == 0:  # nobody above: say so once, and stop watching that deadline
                if missed == "acknowledge":
                    alert.ack_due_at = None
                else:
                    alert.resolve_due_at = None
                changes.append(feed.Change(alert, "overdue", ACTOR, path))
                rows.append(audit.audit_row(ACTOR, "alert.overdue", "alert", alert.id, alert.unit_id, None,
                                            {"missed": missed, "level_unit_id": alert.level_unit_id}))
                continue
            change, row = apply(alert, "escalate", ACTOR, ActionInput(
                reason=f"{missed} deadline passed at the {policy.level_name(level)} level"), policy, path, now)
            changes.append(change)
            rows.append(row)
        if not changes:
            if clocks:
                session.commit()
            return 0
        last = feed.append(session, changes)
        audit.record_many(session, rows)
        session.commit()
    except StaleDataError:  # the engine or a person changed one of them meanwhile: next sweep
        session.rollback()
        return 0
    for change in changes:
        alert = change.alert
        log.info(LOG_NAMES[change.change], extra={"alert_id": alert.id, "code": alert.code,
                                                  "camera_id": alert.camera_id, "level_unit_id": alert.level_unit_id})
    return last
