from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Spread(BaseModel):
    median: float | None
    p90: float | None
    count: int = Field(description="alerts the figure is taken over")


class UnitStats(BaseModel):
    unit_id: int
    code: str
    name: str
    depth: int
    alerts: int
    by_kind: dict[str, int]
    by_state: dict[str, int]
    acknowledge_seconds: Spread
    resolve_seconds: Spread
    closure_rate: float | None
    escalation_rate: float | None
    false_alarm_rate: float | None
    cameras: int
    cameras_online: int
    online_rate: float | None
    suppressions: int = Field(description="false alarms operators taught the cameras (marking alerts false_alarm) "
                                          "that are in force now")
    suppressed_candidates: int = Field(description="fire and smoke candidates those suppressions stopped so far, "
                                                   "counted by the workers: the false alarms that did not come back")


class StatsOut(BaseModel):
    since: datetime
    until: datetime
    units: list[UnitStats] = Field(description="the unit asked for first, then its subtree by path")
