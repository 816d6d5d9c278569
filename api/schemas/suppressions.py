"""What operators taught a camera (`registry.suppressions`), as the API shows it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class SuppressionOut(BaseModel):
    id: int
    camera_id: int
    kind: str = Field(description="flame or smoke: only candidates of this kind are stopped")
    box: list[float] = Field(description="x1, y1, x2, y2, normalised to 0..1 (origin top-left)")
    appearance: list[float] = Field(description="what the box showed (detectors.suppression.describe)")
    alert_id: int | None = Field(description="the alert marked false_alarm that taught it")
    created_by: str
    created_at: datetime
    hits: int = Field(description="candidates it stopped so far (counted by the worker reading the camera)")
    last_hit_at: datetime | None


class SuppressionsOut(BaseModel):
    camera_id: int
    count: int
    limit: int = Field(description="a camera keeps at most this many; past it, the oldest go")
    hits: int = Field(description="candidates all of them stopped so far")
    items: list[SuppressionOut] = Field(description="oldest first")


class SuppressionsDeleted(BaseModel):
    camera_id: int
    deleted: int
