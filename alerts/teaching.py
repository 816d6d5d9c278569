"""What an operator's mark teaches the cameras: `false_alarm` turns the flame and smoke boxes
of the alert's events into suppressions of their cameras (`registry.suppressions.learn`), and
`reopen` of such an alert takes them back (it was not a false alarm after all).

Both run inside the action's transaction (`alerts.store.act`), so the alert, its audit row and
what it taught commit together; the workers are told after the commit (`tell_workers`): a
`taught` notice of each camera on the registry feed makes the worker holding it reload that
camera's suppressions, without restarting its stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.model import Alert, AlertEvent, AlertState
from registry import suppressions
from registry.registry_feed import RegistryFeed


@dataclass(frozen=True)
class Lesson:
    cameras: set[int] = field(default_factory=set)  # whose suppressions changed
    audit: list[dict[str, Any]] = field(default_factory=list)  # rows for the action's transaction


def learn(session: Session, alert: Alert, action: str, previous_state: str, actor: str, scope: str = "") -> Lesson:
    """What `action` (just applied to `alert`, which was in `previous_state`, by `actor` of the
    unit scope `scope`) teaches."""
    if action == "false_alarm":
        events = session.execute(
            select(AlertEvent.camera_id, AlertEvent.kind, AlertEvent.evidence, AlertEvent.at)
            .where(AlertEvent.alert_id == alert.id)
            .order_by(AlertEvent.at.desc(), AlertEvent.event_id).limit(suppressions.MAX_EVENTS)).all()
        cameras, rows = suppressions.learn(session, alert.id, [tuple(e) for e in reversed(events)], actor, scope)
        return Lesson(cameras, rows)
    if action == "reopen" and previous_state == AlertState.false_alarm.value:
        cameras, rows = suppressions.unlearn(session, alert.id, actor, f"alert {alert.code} reopened")
        return Lesson(cameras, rows)
    return Lesson()


def tell_workers(client: redis.Redis | None, lesson: Lesson) -> None:
    """After the commit: the workers reload the cameras whose suppressions changed."""
    feed = RegistryFeed(client)
    for camera_id in sorted(lesson.cameras):
        feed.publish("taught", camera_id)
