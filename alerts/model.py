"""`Alert` and what hangs off it: the events it merged, the change feed, case-code counters.

An alert is owned by the unit of the camera that raised it (`unit_id`, fixed) and is at one
level of the chain at a time (`level_unit_id`: the owner, or an ancestor after escalation).
Its deadlines (and `clears_at`, when a camera that was offline is back) are columns, so they
survive any restart; `version` is bumped by every change and checked on write (optimistic
locking), so two processes never overwrite each other.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from config.database import Base, UTCDateTime, utcnow


class AlertState(str, enum.Enum):
    new = "new"
    acknowledged = "acknowledged"
    dispatched = "dispatched"
    resolved = "resolved"
    false_alarm = "false_alarm"


OPEN_STATES = (AlertState.new.value, AlertState.acknowledged.value, AlertState.dispatched.value)


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_open_camera", "camera_id", "kind", "state"),
        Index("ix_alerts_unit_state", "unit_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    severity_rank: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    camera_id: Mapped[int | None] = mapped_column(ForeignKey("cameras.id", ondelete="SET NULL"))
    camera_ids: Mapped[list[int]] = mapped_column(JSON)  # every camera of the incident, first first
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    level_unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    addressed: Mapped[list[int]] = mapped_column(JSON)  # units it is sent to now (level, broadcast)
    escalations: Mapped[int] = mapped_column(Integer, default=0)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)  # the peak
    event_count: Mapped[int] = mapped_column(Integer)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)
    snapshot: Mapped[str | None] = mapped_column(String(500))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    level_since: Mapped[datetime] = mapped_column(UTCDateTime)
    ack_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    resolve_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    #: an offline camera is back: the alert closes itself then, unless the camera drops again first
    clears_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    assignee: Mapped[str | None] = mapped_column(String(200))
    feedback: Mapped[str | None] = mapped_column(Text)
    evidence_file: Mapped[str | None] = mapped_column(String(500))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, index=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    __mapper_args__ = {"version_id_col": version}

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def public(self) -> dict[str, Any]:
        """The alert as the API, the feed and the audit log show it."""
        return {
            "id": self.id, "code": self.code, "kind": self.kind, "severity": self.severity, "state": self.state,
            "camera_id": self.camera_id, "camera_ids": list(self.camera_ids), "unit_id": self.unit_id,
            "level_unit_id": self.level_unit_id, "addressed": list(self.addressed), "escalations": self.escalations,
            "latitude": self.latitude, "longitude": self.longitude, "score": self.score,
            "event_count": self.event_count, "first_at": self.first_at, "last_at": self.last_at,
            "snapshot": self.snapshot, "evidence": self.evidence, "ack_due_at": self.ack_due_at,
            "resolve_due_at": self.resolve_due_at, "clears_at": self.clears_at, "acknowledged_at": self.acknowledged_at,
            "dispatched_at": self.dispatched_at, "closed_at": self.closed_at, "assignee": self.assignee,
            "feedback": self.feedback, "evidence_file": self.evidence_file, "reason": self.reason,
            "created_at": self.created_at, "updated_at": self.updated_at, "version": self.version,
        }


class AlertEvent(Base):
    """One event of `lookout:events`, in exactly one alert: the primary key is the event id,
    so a redelivered event can never be counted twice."""

    __tablename__ = "alert_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    camera_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    score: Mapped[float] = mapped_column(Float)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)


class AlertChange(Base):
    """The feed: one row per change of an alert, numbered without gaps in commit order (see
    `alerts.feed`). SSE, WebSocket, webhooks and MQTT all read it by id."""

    __tablename__ = "alert_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    change: Mapped[str] = mapped_column(String(32))  # created, event, acknowledged, ..., escalated
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(128))
    unit_path: Mapped[str] = mapped_column(String(400))  # the owner unit's path: the scope test
    addressed: Mapped[list[int]] = mapped_column(JSON)
    kind: Mapped[str] = mapped_column(String(32))
    severity_rank: Mapped[int] = mapped_column(Integer)
    alert: Mapped[dict[str, Any]] = mapped_column(JSON)  # the alert after the change (`Alert.public`)
