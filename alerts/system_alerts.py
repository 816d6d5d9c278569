"""Alerts about the deployment itself, not one camera: a worker's disk filling up.

Workers send them as events of camera `SYSTEM_CAMERA_ID` (0) naming their host in the evidence
(`host`, `path`, ...). Such an alert has no camera (camera_id NULL, camera_ids []: the foreign
key to cameras holds) and belongs to the unit that runs the machines: the one named by
`alerts.system_unit_code`, else the oldest root unit. With several roots (counties sharing one
installation) the first created is the installation's own, and a fixed choice keeps every
alert of one host with one unit; only people whose unit covers it see them, as for any alert.
One alert per (kind, host, path) is open at a time: a host's data and video may be on
separate disks, each watched alone (`ingest.storage_guard`); later `disk_pressure` events of
that disk join its alert, and `disk_recovered` from the same disk resolves it, not the other's.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.model import OPEN_STATES, Alert
from alerts.policy import CameraFacts
from config.alerting import AlertSettings
from detectors.events import SYSTEM_CAMERA_ID
from registry.units import Unit

#: the kind that closes an open system alert → (the kind it closes, the feedback it leaves)
CLOSES = {"disk_recovered": ("disk_pressure", "disk space recovered")}
OPENERS = tuple(kind for kind, _ in CLOSES.values())
log = logging.getLogger("lookout.alerts")


def disk_of(evidence: dict[str, Any]) -> tuple[str, str]:
    """(host, path) of a system event or alert: the disk it is about."""
    return str(evidence.get("host") or ""), str(evidence.get("path") or "")


def owner(session: Session, settings: AlertSettings) -> CameraFacts | None:
    """The unit that owns system alerts, as routing facts without a camera; None when there
    is no unit at all (the event then waits in the rejected stream, saying so)."""
    unit = None
    if settings.system_unit_code:
        unit = session.scalar(select(Unit).where(Unit.code == settings.system_unit_code))
        if unit is None:
            log.warning("system_unit_missing", extra={"code": settings.system_unit_code})
    if unit is None:
        unit = session.scalar(select(Unit).where(Unit.parent_id.is_(None)).order_by(Unit.id).limit(1))
    if unit is None:
        return None
    return CameraFacts(SYSTEM_CAMERA_ID, unit.id, unit.code, unit.path, None, None, frozenset())


def open_alerts(session: Session) -> list[tuple[Alert, str]]:
    """The open system alerts, with their owner unit's path."""
    rows = session.execute(select(Alert, Unit.path).join(Unit, Unit.id == Alert.unit_id).where(
        Alert.camera_id.is_(None), Alert.kind.in_(OPENERS), Alert.state.in_(OPEN_STATES)).order_by(Alert.id))
    return [(alert, path) for alert, path in rows]
