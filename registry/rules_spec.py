"""What a technician may write about a camera's detection rules, validated once for the API and
stored as JSON beside the camera; `to_rules()` turns it into the `detectors.rules.CameraRules`
the workers compile.

Every field is optional: what a body leaves out keeps the default every camera has, so a
kitchen camera can get one exclusion zone without restating the thresholds. Armed hours are
written as "HH:MM" (local time of the worker), the way the centers' duty rosters write them
(`registry.fields.ArmedWindow`, which the alert subscriptions' hours share).
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from detectors.rules import CameraRules, Zone
from registry.fields import ArmedWindow, Name, minutes

DEFAULTS = CameraRules()
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Point = tuple[Share, Share]


class ZoneSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    polygon: Annotated[list[Point], Field(min_length=3, max_length=64,
                                          description="(x, y) points normalised to 0..1, origin top-left")]
    include: bool = Field(True, description="false: an exclusion (chimney, kitchen, welding bay)")
    area_m2: Annotated[float, Field(gt=0, le=1e6)] | None = Field(
        None, description="ground area the zone covers, for crowd density; crowds are counted only in such zones")


class Persistence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: Annotated[int, Field(ge=1, le=30)] = DEFAULTS.persistence[0]
    n: Annotated[int, Field(ge=1, le=30)] = DEFAULTS.persistence[1]

    @model_validator(mode="after")
    def _k_of_n(self) -> Self:
        if self.k > self.n:
            raise ValueError("k (samples that must show it) cannot exceed n (samples looked at)")
        return self


class CrowdLevels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pre_alarm: Annotated[float, Field(gt=0, le=100)] = DEFAULTS.crowd_levels[0]
    alarm: Annotated[float, Field(gt=0, le=100)] = DEFAULTS.crowd_levels[1]

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.pre_alarm >= self.alarm:
            raise ValueError("the pre-alarm density must be below the alarm density")
        return self


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flame: Share = DEFAULTS.thresholds["flame"]
    smoke: Share = DEFAULTS.thresholds["smoke"]
    person: Share = DEFAULTS.thresholds["person"]


class RulesSpec(BaseModel):
    """A camera's detection rules; absent fields keep the defaults."""

    model_config = ConfigDict(extra="forbid")

    zones: Annotated[list[ZoneSpec], Field(max_length=32)] = Field(
        default_factory=list, description="no include zone: the whole picture is watched")
    thresholds: Thresholds = Field(default_factory=Thresholds, description="score a box needs, per kind")
    min_box_area: Share = Field(DEFAULTS.min_box_area, description="share of the picture a box must cover")
    persistence: Persistence = Field(default_factory=Persistence, description="k of the last n samples")
    cooldown_seconds: Annotated[float, Field(ge=0, le=7 * 86400)] = DEFAULTS.cooldown_seconds
    armed: Annotated[list[ArmedWindow], Field(max_length=16)] = Field(
        default_factory=list, description="local times the rules raise events; empty: always")
    crowd_levels: CrowdLevels = Field(default_factory=CrowdLevels, description="people per m²")
    crowd_min_seconds: Annotated[float, Field(ge=0, le=3600)] = DEFAULTS.crowd_min_seconds
    crowd_rise_per_minute: Annotated[float, Field(gt=0, le=100_000)] | None = Field(
        DEFAULTS.crowd_rise_per_minute, description="a zone under the pre-alarm density whose count grows this fast "
        "(people per minute) raises crowd level `rising`; null: never")
    crowd_rise_seconds: Annotated[float, Field(ge=20, le=3600)] = Field(
        DEFAULTS.crowd_rise_seconds, description="the span over which the rate of growth is measured; it needs three "
        "counts, so at least twice the workers' crowd interval (10 s by default)")

    @field_validator("zones")
    @classmethod
    def _unique_names(cls, zones: list[ZoneSpec]) -> list[ZoneSpec]:
        names = [zone.name for zone in zones]
        if len(set(names)) != len(names):
            raise ValueError("zone names must be unique within a camera")
        return zones

    @model_validator(mode="after")
    def _compiles(self) -> Self:
        self.to_rules()  # the detectors' own checks too, should they ever ask more than the fields above
        return self

    def to_rules(self) -> CameraRules:
        return CameraRules(
            zones=tuple(Zone(z.name, tuple((float(x), float(y)) for x, y in z.polygon), z.include, z.area_m2)
                        for z in self.zones),
            thresholds=self.thresholds.model_dump(),
            min_box_area=self.min_box_area,
            persistence=(self.persistence.k, self.persistence.n),
            cooldown_seconds=self.cooldown_seconds,
            armed=tuple((minutes(w.start), minutes(w.end)) for w in self.armed),
            crowd_levels=(self.crowd_levels.pre_alarm, self.crowd_levels.alarm),
            crowd_min_seconds=self.crowd_min_seconds,
            crowd_rise_per_minute=self.crowd_rise_per_minute,
            crowd_rise_seconds=self.crowd_rise_seconds,
        )


def stored_spec(text: str | None) -> RulesSpec | None:
    """A camera's stored rules (None: it has none and takes the defaults). ValueError when the
    stored text no longer validates (edited in the database by hand)."""
    return RulesSpec.model_validate_json(text) if text else None
