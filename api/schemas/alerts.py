"""Alert bodies: what the routes return, and what the lifecycle actions take."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.audit import AuditOut
from registry.fields import Name, Reason


class AlertOut(BaseModel):
    """An alert: an event (or an incident of several) promoted to work, with its case code."""

    id: int
    code: str = Field(description="case code: owner unit code, local date, sequence of that day")
    kind: str
    severity: str = Field(description="info, minor, major or critical")
    state: str = Field(description="new, acknowledged, dispatched, resolved or false_alarm")
    camera_id: int | None
    camera_ids: list[int] = Field(description="every camera of the incident")
    unit_id: int = Field(description="the unit that owns the camera")
    level_unit_id: int = Field(description="the unit the alert is at now (an ancestor after escalation)")
    addressed: list[int] = Field(description="units it is sent to now")
    escalations: int
    latitude: float | None
    longitude: float | None
    score: float = Field(description="the highest score of its events")
    event_count: int
    first_at: datetime
    last_at: datetime
    snapshot: str | None
    evidence: dict[str, Any]
    ack_due_at: datetime | None
    resolve_due_at: datetime | None
    clears_at: datetime | None = Field(
        None, description="camera_offline: the camera is back, and the alert closes itself at this time "
                          "unless it drops again before (then it counts one more outage: evidence.outages)")
    acknowledged_at: datetime | None
    dispatched_at: datetime | None
    closed_at: datetime | None
    assignee: str | None
    feedback: str | None
    evidence_file: str | None
    reason: str | None
    created_at: datetime
    updated_at: datetime
    version: int


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_cursor: str | None


class AlertDetail(AlertOut):
    history: list[AuditOut] = Field(description="every recorded step, oldest first")


class AlertEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_id: str
    camera_id: int
    kind: str
    at: datetime
    score: float
    evidence: dict[str, Any]


class ActionBody(BaseModel):
    """What an action needs: dispatch `assignee`; false_alarm and reopen `reason`; escalate
    takes an optional `reason`; acknowledge nothing. Resolve is sent as a form (feedback, and
    an optional evidence file). Both are one line: no control characters (they end up in
    notifications, webhooks and the audit log, where a line break forges a line)."""

    model_config = ConfigDict(extra="forbid")

    assignee: Name | None = Field(None, description="dispatch: who is sent")
    reason: Reason | None = None
