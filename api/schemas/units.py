from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from registry.fields import DbId, Name, UnitCode


class UnitCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    code: UnitCode
    parent_id: DbId | None = None


class UnitUpdate(BaseModel):
    """Rename, recode, or move (give `parent_id`) a unit with its whole subtree."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    code: UnitCode | None = None
    parent_id: DbId | None = None


class UnitOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    code: str
    parent_id: int | None
    depth: int
    created_at: datetime


class OnlineOut(BaseModel):
    """Enabled cameras of a unit's whole subtree by status; online rate = online / cameras."""

    unit_id: int
    cameras: int
    online: int
    offline: int
    degraded: int
    unknown: int
    online_rate: float | None
