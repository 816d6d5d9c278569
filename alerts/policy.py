"""Decisions made from `AlertSettings` alone: severity, deadlines, who an alert is addressed
to, case codes and which open alerts an event may join. No database, no Redis."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from config.alerting import SEVERITIES, AlertSettings, severity_rank

EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True, slots=True)
class CameraFacts:
    """What routing needs to know of the camera that raised an event."""

    camera_id: int
    unit_id: int
    unit_code: str
    unit_path: str
    latitude: float | None
    longitude: float | None
    tags: frozenset[str]

    @property
    def chain(self) -> list[int]:
        """The unit ids from the root down to the camera's unit."""
        return path_ids(self.unit_path)


def path_ids(path: str) -> list[int]:
    return [int(part) for part in path.split("/") if part]


def level_index(chain: list[int], level_unit_id: int) -> int:
    """Where an alert's level unit stands in its owner's chain (`chain`: unit ids, root first).

    The chain is the owner unit's path now. When the level unit is no longer on it (the owner
    unit was moved to another branch of the tree after the alert was escalated), the alert
    stands at its owner again: its deadlines then count there, and a passed one takes it up
    the owner's new chain, rather than failing every action on it."""
    try:
        return chain.index(level_unit_id)
    except ValueError:
        return len(chain) - 1


def event_zones(evidence: dict[str, Any]) -> set[str]:
    zones = set(evidence.get("zones") or ())
    if evidence.get("zone"):
        zones.add(str(evidence["zone"]))
    return zones


def distances_m(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Great-circle distance in metres from one point to many (haversine)."""
    phi1, phi2 = np.radians(lat), np.radians(lats)
    dphi, dlam = phi2 - phi1, np.radians(lons - lon)
    h = np.sin(dphi / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlam / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


class AlertPolicy:
    def __init__(self, settings: AlertSettings) -> None:
        self.settings = settings
        self.zone = ZoneInfo(settings.timezone)

    def alerting(self, kind: str) -> bool:
        return kind in self.settings.kind_severity

    def severity(self, kind: str, score: float, events: int, camera: CameraFacts,
                 evidence: dict[str, Any]) -> str:
        """The highest severity among the kind's base and every rule that matches."""
        rank = severity_rank(self.settings.kind_severity[kind])
        zones = event_zones(evidence)
        for rule in self.settings.severity_rules:
            if severity_rank(rule.severity) <= rank:
                continue
            if rule.kinds and kind not in rule.kinds:
                continue
            if score < rule.min_score or events < rule.min_events:
                continue
            if rule.camera_tags and not camera.tags.intersection(rule.camera_tags):
                continue
            if rule.zones and not zones.intersection(rule.zones):
                continue
            if rule.crowd_levels and evidence.get("level") not in rule.crowd_levels:
                continue
            rank = severity_rank(rule.severity)
        return SEVERITIES[rank]

    def level_name(self, depth: int) -> str:
        levels = self.settings.levels
        return levels[min(depth, len(levels) - 1)]

    def deadlines(self, depth: int, severity: str, since: datetime, state: str
                  ) -> tuple[datetime | None, datetime | None]:
        """(acknowledge by, resolve by) for an alert that reached a unit of `depth` at `since`."""
        if state not in ("new", "acknowledged", "dispatched"):
            return None, None
        limits = self.settings.deadlines[self.level_name(depth)][severity]  # type: ignore[index]
        ack = since + timedelta(seconds=limits.acknowledge_seconds) if state == "new" else None
        return ack, since + timedelta(seconds=limits.resolve_seconds)

    def addressed(self, chain: list[int], level_index: int, severity: str) -> list[int]:
        """The units an alert at `chain[level_index]` is sent to: that unit, and for severities
        with broadcast levels, that many units above it at once."""
        above = self.settings.broadcast_levels.get(severity, 0)  # type: ignore[call-overload]
        return chain[max(0, level_index - above):level_index + 1]

    def case_code(self, unit_code: str, at: datetime, sequence: int) -> str:
        return f"{unit_code}-{self.case_day(at)}-{sequence:04d}"

    def case_day(self, at: datetime) -> str:
        return at.astimezone(self.zone).strftime("%Y%m%d")

    def nearby(self, camera: CameraFacts, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
        """Which of the candidates' positions lie within the incident distance of `camera`
        (none when the camera has no coordinates)."""
        if camera.latitude is None or camera.longitude is None or not len(lats):
            return np.zeros(len(lats), bool)
        with np.errstate(invalid="ignore"):
            return distances_m(camera.latitude, camera.longitude, lats, lons) <= self.settings.merge_distance_m
