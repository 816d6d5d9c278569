"""Camera outages as one alert: a flapping camera (down, up, down...) is one `camera_offline`
alert that counts its outages, as NVRs suppress flapping.

A `camera_online` does not close the offline alert: it starts the alert's recovery clock
(`Alert.clears_at`: when the camera came back + `alerts.offline_recovery_seconds`). An outage
before then joins the same alert (one more outage; the clock stops); the deadline sweep closes
the alert once the clock has run out. The alert's evidence keeps the count and when the camera
last went down and came back (`outages`, `flapping`, `offline_at`, `online_at`), so events that
arrive out of order (an engine died holding some, another took the later ones) are judged by
when they happened: an online older than the last outage starts no clock, an outage older than
the last online does not stop it, and the clock counts from the latest return known (an older
online arriving late does not move it back before an outage it did not see). The count is of
the outages seen in order: an outage whose recovery is still on its way may be counted only
when it arrives, or not at all.

An online can even be handled before its outage (two engines share a backlog and the one with
the online commits first; an engine died holding the outage, claimed 30 s later; a dead
worker's outbox adopted after the camera's new worker said it was back): it finds no alert and
is left out. The camera registry remembers the return instead: the worker writes `online` and
stamps `last_seen_at` itself, and keeps that row true across database outages. An outage whose
camera the registry has seen online since starts its recovery clock from that sighting, when
the alert opens (`seen_back`) or, if the worker's write was still waiting then, at the next
sweep (`registry_back`). So no offline alert stays open while its camera is back.

Only what is worth a notification goes to the feed: the alert's creation, its turning flapping
(the second outage) and its close. The outages between change the alert, which the API shows,
without a feed change each, so a subscriber is not paged once per outage.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.feed import Change
from alerts.lifecycle import ENGINE_ACTOR, settle
from alerts.model import OPEN_STATES, Alert
from registry.audit import audit_row
from registry.cameras import Camera, CameraStatus
from registry.units import Unit

OFFLINE, ONLINE = "camera_offline", "camera_online"
RECOVERED = "camera back online"
log = logging.getLogger("lookout.alerts")


def _moment(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def opened(alert: Alert, at: datetime) -> None:
    """A new offline alert: its first outage, the camera down since `at`."""
    alert.evidence = {**alert.evidence, "outages": 1, "flapping": False, "offline_at": at.isoformat(),
                      "online_at": None}


def went_offline(alert: Alert, at: datetime, evidence: dict[str, Any]) -> bool:
    """The camera's offline event at `at` joins its open offline alert; True when this made
    the alert flapping (its second outage: worth announcing)."""
    shown = dict(alert.evidence)
    offline_at, online_at = _moment(shown.get("offline_at")), _moment(shown.get("online_at"))
    latest = offline_at is None or at >= offline_at
    # a new outage when the camera was seen back after the last one; an offline without a
    # recovery between (a worker restarted, a duplicate) is the same outage
    new_outage = latest and online_at is not None and (offline_at is None or online_at >= offline_at)
    if latest:
        shown = {**shown, **evidence, "offline_at": at.isoformat()}
    if online_at is None or at >= online_at:
        alert.clears_at = None  # down again: no recovery clock
    outages = int(shown.get("outages") or 1) + (1 if new_outage else 0)
    alert.evidence = {**shown, "outages": outages, "flapping": outages >= 2}
    return new_outage and outages == 2


def came_online(alert: Alert, at: datetime, now: datetime, recovery_seconds: float) -> None:
    """The camera's online event at `at` joins its open offline alert: the recovery clock
    starts from `at` (never later than the engine's `now`), unless an outage came after it or
    a later return is known already (the clock counts from that one)."""
    shown = dict(alert.evidence)
    offline_at, online_at = _moment(shown.get("offline_at")), _moment(shown.get("online_at"))
    if online_at is not None and at <= online_at:
        return
    alert.evidence = {**shown, "online_at": at.isoformat()}
    if offline_at is None or at >= offline_at:
        alert.clears_at = min(at, now) + timedelta(seconds=recovery_seconds)


def seen_back(alert: Alert, seen_at: datetime | None, now: datetime, recovery_seconds: float) -> bool:
    """The registry says the offline alert's camera is online, last seen at `seen_at`: when that
    is after the alert's latest event, the camera is back since and the recovery clock starts
    from then (as from an online event; the online event itself may never come to this alert).
    True when it did."""
    if seen_at is None or seen_at <= alert.last_at or alert.clears_at is not None:
        return False
    came_online(alert, seen_at, now, recovery_seconds)
    if alert.clears_at is None:
        return False
    log.info("alert_recovery_from_registry", extra={
        "code": alert.code, "camera_id": alert.camera_id, "seen_at": seen_at.isoformat()})
    return True


def registry_back(session: Session, now: datetime, recovery_seconds: float, limit: int = 200) -> int:
    """Start the recovery clock of the open offline alerts whose camera the registry has seen
    online after their latest event (a worker's status write that waited for the database
    longer than the alert's outage did); how many. The caller commits."""
    rows = session.execute(select(Alert, Camera.last_seen_at).join(Camera, Camera.id == Alert.camera_id).where(
        Alert.kind == OFFLINE, Alert.state.in_(OPEN_STATES), Alert.clears_at.is_(None),
        Camera.status == CameraStatus.online.value, Camera.last_seen_at.is_not(None)).limit(limit))
    return sum(seen_back(alert, seen_at, now, recovery_seconds) for alert, seen_at in rows)


def clear_recovered(session: Session, now: datetime, limit: int = 200
                    ) -> list[tuple[Change, dict[str, Any]]]:
    """Resolve the open alerts whose recovery clock has run out: their feed changes and audit
    rows, for the caller to commit (the sweep, with its escalations)."""
    rows = session.execute(select(Alert, Unit.path).join(Unit, Unit.id == Alert.unit_id)
                           .where(Alert.clears_at <= now, Alert.state.in_(OPEN_STATES))
                           .order_by(Alert.clears_at).limit(limit))
    done = []
    for alert, path in rows:
        before = settle(alert, now, RECOVERED)
        done.append((Change(alert, "resolved", ENGINE_ACTOR, path),
                     audit_row(ENGINE_ACTOR, "alert.resolve", "alert", alert.id, alert.unit_id, before,
                               {"code": alert.code, "state": alert.state, "camera_id": alert.camera_id,
                                "outages": alert.evidence.get("outages")})))
    return done
