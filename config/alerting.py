"""Settings of the alert chain: severity rules, merging, deadlines per level and severity.

They live under the `alerts:` key of the settings file (env `LOOKOUT_ALERTS__...`). The
defaults follow FIELD.md: events are handled at the lowest level first and go up the chain
(village → township → county) when a level does not act in time; flame at a hazardous point
is critical and is sent to every level at once.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Severity = Literal["info", "minor", "major", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "minor", "major", "critical")  # in rising order


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


class SeverityRule(BaseModel):
    """Raises an alert to `severity` when every condition given holds (unset: any)."""

    model_config = ConfigDict(extra="forbid")

    severity: Severity
    kinds: list[str] = Field(default_factory=list, description="event kinds; empty: any")
    min_score: float = Field(0.0, ge=0)
    min_events: int = Field(1, ge=1, description="events merged into the alert so far")
    camera_tags: list[str] = Field(default_factory=list, description="the camera carries any of these tags")
    zones: list[str] = Field(default_factory=list, description="the event lies in any of these zones")
    crowd_levels: list[Literal["rising", "pre_alarm", "alarm"]] = Field(default_factory=list)


class Deadline(BaseModel):
    model_config = ConfigDict(extra="forbid")

    acknowledge_seconds: float = Field(gt=0)
    resolve_seconds: float = Field(gt=0)


def _deadlines(ack: tuple[float, ...], resolve: tuple[float, ...]) -> dict[str, Deadline]:
    return {s: Deadline(acknowledge_seconds=a, resolve_seconds=r) for s, a, r in zip(SEVERITIES, ack, resolve)}


def _default_deadlines() -> dict[str, dict[str, Deadline]]:
    minute, hour = 60.0, 3600.0
    return {
        "village": _deadlines((60 * minute, 15 * minute, 5 * minute, 2 * minute),
                              (24 * hour, 4 * hour, 1 * hour, 30 * minute)),
        "township": _deadlines((60 * minute, 15 * minute, 5 * minute, 2 * minute),
                               (24 * hour, 4 * hour, 2 * hour, 1 * hour)),
        "county": _deadlines((60 * minute, 30 * minute, 10 * minute, 5 * minute),
                             (48 * hour, 8 * hour, 4 * hour, 2 * hour)),
    }


def _default_rules() -> list[SeverityRule]:
    return [
        SeverityRule(severity="critical", kinds=["flame", "smoke"], camera_tags=["hazmat", "危化品", "加油站"]),
        SeverityRule(severity="critical", kinds=["flame"], min_events=10),
        SeverityRule(severity="major", kinds=["smoke"], min_score=0.8),
        SeverityRule(severity="major", kinds=["smoke"], min_events=5),
        SeverityRule(severity="major", kinds=["crowd"], crowd_levels=["alarm"]),
    ]


class AlertSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind_severity: dict[str, Severity] = Field(
        default_factory=lambda: {"flame": "major", "smoke": "minor", "crowd": "minor",
                                 "camera_offline": "info", "video_degraded": "info", "disk_pressure": "major"},
        description="each alerting kind's base severity; kinds not listed make no alert. disk_pressure "
                    "(a worker's disk nearly full: recording stops, no new video evidence) is major")
    severity_rules: list[SeverityRule] = Field(default_factory=_default_rules)
    merge_distance_m: float = Field(300.0, ge=0, description="cameras this close join one incident")
    merge_window_seconds: float = Field(900.0, ge=0, description="...if the open alert saw an event this recently")
    offline_recovery_seconds: float = Field(
        60.0, ge=0, le=86_400,
        description="a camera back online closes its offline alert only after staying online this long; an "
                    "outage before then joins the same alert (one alert per flapping camera, with its outages); "
                    "0: closed at once")
    system_unit_code: str | None = Field(
        None, min_length=1, max_length=12,
        description="code of the unit that owns alerts about the deployment itself (disk_pressure); unset: the "
                    "oldest root unit (the one with no parent created first)")
    incident_kinds: list[str] = Field(default_factory=lambda: ["flame", "smoke", "crowd"],
                                      description="kinds whose nearby cameras of one unit join one incident")
    levels: list[str] = Field(default_factory=lambda: ["county", "township", "village"],
                              description="unit depth 0, 1, 2... by name; deeper units take the last")
    deadlines: dict[str, dict[Severity, Deadline]] = Field(default_factory=_default_deadlines)
    broadcast_levels: dict[Severity, int] = Field(
        default_factory=lambda: {"critical": 2},
        description="an alert of this severity is also addressed to this many units above its own at once")
    timezone: str = Field("Asia/Shanghai", description="the day of a case code (unit code + date + sequence)")
    engine_batch: int = Field(200, ge=1, le=10_000)
    claim_idle_seconds: float = Field(30.0, gt=0, description="a consumer silent this long is dead: take its entries")
    sweep_seconds: float = Field(1.0, gt=0, le=60, description="how often deadlines are checked")
    mqtt_url: str | None = Field(None, description="mqtt://host:port of the broker MQTT subscriptions publish to")
    retry_first_seconds: float = Field(2.0, gt=0, description="a failed delivery is tried again after this...")
    retry_max_seconds: float = Field(900.0, gt=0, description="...doubling up to this between tries...")
    give_up_hours: float = Field(24.0, gt=0, description="...until this long has passed: then a dead letter")
    feed_retention_days: float = Field(
        90.0, gt=0, description="changes older than this leave the feed (no resuming from before), and finished "
                                "deliveries their list; alerts and the audit log are kept")

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://")
        return value

    @model_validator(mode="after")
    def _every_level_has_deadlines(self) -> AlertSettings:
        for level in self.levels:
            missing = [s for s in SEVERITIES if s not in self.deadlines.get(level, {})]
            if missing:
                raise ValueError(f"deadlines.{level} lacks {', '.join(missing)}")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(self.timezone)
        except Exception as exc:  # noqa: BLE001 - any failure means the name is unusable
            raise ValueError(f"timezone {self.timezone!r} is unknown") from exc
        return self
