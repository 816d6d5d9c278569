"""One batch of events turned into alerts inside one transaction: new alerts, events joining
open ones, offline alerts counting outages, system alerts of the deployment itself.

An alert belongs to the unit that owned its camera when it opened (`Alert.unit_id`), for its
whole life. Events that join it are routed by the alert: the feed's scope, the units it is
addressed to, its deadlines and a rise of its severity all follow its owner's chain, even when
the camera has since been moved to another unit (the camera's own facts, tags and zones, still
count for severity). Once that alert is closed, the camera's next event opens a new alert,
owned by the camera's unit of that moment.

Deadlines count from when the event happened, not from when an engine got to it (an engine
that died leaves its events to be claimed 30 s later): `level_since` is the event's time,
never later than the engine's clock. An event that waited longer than its deadline (an outbox
drained after an hour) makes an alert that is overdue at once: the next sweep takes it one
level up, where the new level gets its full deadline from then.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import and_, insert, or_, select
from sqlalchemy.orm import Session

from alerts import feed, outages, system_alerts
from alerts.counters import take
from alerts.feed import Change
from alerts.lifecycle import ENGINE_ACTOR, set_deadlines, settle
from alerts.model import OPEN_STATES, Alert, AlertEvent, AlertState
from alerts.policy import AlertPolicy, CameraFacts, level_index, path_ids
from config.alerting import severity_rank
from detectors.events import SYSTEM_CAMERA_ID, SYSTEM_KINDS, Event
from registry import audit
from registry.cameras import Camera, CameraStatus, CameraTag
from registry.units import Unit

ENGINE_TURN = "alert_engine"
log = logging.getLogger("lookout.alerts")


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def load_cameras(session: Session, ids: list[int]) -> tuple[dict[int, CameraFacts], dict[int, datetime]]:
    """Routing facts of the cameras `ids`, with their unit's code and path, in two queries; and
    when the registry last saw each one online (those whose status is `online`): an outage
    older than that is over already (`outages.seen_back`)."""
    tags: dict[int, set[str]] = {}
    tag_rows = session.execute(select(CameraTag.camera_id, CameraTag.tag).where(CameraTag.camera_id.in_(ids)))
    for camera_id, tag in tag_rows:
        tags.setdefault(camera_id, set()).add(tag)
    rows = session.execute(
        select(Camera.id, Camera.unit_id, Unit.code, Unit.path, Camera.latitude, Camera.longitude, Camera.status,
               Camera.last_seen_at).join(Unit, Unit.id == Camera.unit_id).where(Camera.id.in_(ids))).all()
    facts = {r.id: CameraFacts(r.id, r.unit_id, r.code, r.path, r.latitude, r.longitude,
                               frozenset(tags.get(r.id, ()))) for r in rows}
    online = {r.id: r.last_seen_at for r in rows
              if r.status == CameraStatus.online.value and r.last_seen_at is not None}
    return facts, online


@dataclass
class Absorbed:
    """What one batch did."""

    changes: list[Change] = field(default_factory=list)
    created: int = 0
    merged: int = 0
    duplicates: int = 0
    ignored: int = 0
    last_change: int = 0
    rejected: list[tuple[Event, str]] = field(default_factory=list)  # (event, why no alert can take it)


class Absorber:
    """One transaction's worth of events turned into alerts (new or joined)."""

    def __init__(self, session: Session, policy: AlertPolicy, now: datetime) -> None:
        self.session, self.policy, self.now = session, policy, now
        self.settings = policy.settings
        self.by_camera: dict[tuple[int, str], Alert] = {}
        self.by_unit: dict[tuple[int, str], list[Alert]] = {}
        self.by_disk: dict[tuple[str, str, str], Alert] = {}  # (kind, host, path) → its open system alert
        self.seen_online: dict[int, datetime] = {}  # camera id → last seen online, where the registry says online
        self.touched: dict[int, tuple[Alert, str, str]] = {}  # id(alert) → (alert, change, unit path)
        self.owner_paths: dict[int, str] = {}  # id(alert) → its owner unit's path, the scope of its changes
        self.audit_rows: list[tuple[Alert, str, dict[str, Any] | None]] = []
        self.members: list[tuple[Event, Alert]] = []
        self._system_owner: CameraFacts | None = None

    def run(self, events: list[Event]) -> Absorbed:
        take(self.session, ENGINE_TURN, 0)  # our turn; on SQLite the write lock, before any read
        result = Absorbed()
        stored = set(self.session.scalars(
            select(AlertEvent.event_id).where(AlertEvent.event_id.in_([e.event_id for e in events]))))
        fresh: dict[str, Event] = {}
        for event in events:
            if event.event_id in stored or event.event_id in fresh:
                result.duplicates += 1
            else:
                fresh[event.event_id] = event
        if not fresh:
            return result
        cameras, self.seen_online = load_cameras(self.session, sorted({e.camera_id for e in fresh.values()}))
        self._load_open(cameras, {e.kind for e in fresh.values()} | {outages.OFFLINE})
        if any(_is_system(e) for e in fresh.values()):
            for alert, owner_path in system_alerts.open_alerts(self.session):
                self._index(alert, owner_path)
        for event in sorted(fresh.values(), key=lambda e: e.at):
            facts = cameras.get(event.camera_id)
            if _is_system(event):
                self._system(event, result)
            elif facts is None:
                result.rejected.append((event, f"camera {event.camera_id} does not exist"))
            elif event.kind == outages.ONLINE:
                result.ignored += 0 if self._camera_back(event) else 1
            elif not self.policy.alerting(event.kind):
                result.ignored += 1
            else:
                self._absorb(event, facts, result)
        self._write(result)
        return result

    def _absorb(self, event: Event, facts: CameraFacts, result: Absorbed) -> None:
        """An alerting event of a camera (or of the deployment): a new alert, or it joins one."""
        alert = self._joinable(event, facts)
        if alert is None:
            self._create(event, facts)
            result.created += 1
            return
        announce = "event"
        if event.kind == outages.OFFLINE:  # an outage joins the camera's open offline alert
            announce = "flapping" if outages.went_offline(alert, _at(event.at), event.evidence) else ""
        self._merge(alert, event, facts, announce)
        result.merged += 1

    # -- reading ---------------------------------------------------------------------------
    def _load_open(self, cameras: dict[int, CameraFacts], kinds: set[str]) -> None:
        units = {f.unit_id for f in cameras.values()}
        incident = kinds & set(self.settings.incident_kinds)
        wanted = or_(and_(Alert.camera_id.in_(list(cameras)), Alert.kind.in_(sorted(kinds))),
                     and_(Alert.unit_id.in_(sorted(units)), Alert.kind.in_(sorted(incident))))
        rows = self.session.execute(select(Alert, Unit.path).join(Unit, Unit.id == Alert.unit_id)
                                    .where(Alert.state.in_(OPEN_STATES), wanted).order_by(Alert.last_at.desc()))
        for alert, owner_path in rows:
            self._index(alert, owner_path)

    def _index(self, alert: Alert, owner_path: str) -> None:
        self.owner_paths[id(alert)] = owner_path
        if alert.camera_id is None and alert.kind in system_alerts.OPENERS:
            self.by_disk.setdefault((alert.kind, *system_alerts.disk_of(alert.evidence)), alert)
        for camera_id in alert.camera_ids:
            self.by_camera.setdefault((camera_id, alert.kind), alert)
        self.by_unit.setdefault((alert.unit_id, alert.kind), []).append(alert)

    def _joinable(self, event: Event, facts: CameraFacts) -> Alert | None:
        """The open alert this event joins: the disk's own for a system event, the camera's
        own, else a nearby, recent incident of the same unit and kind."""
        if facts.camera_id == SYSTEM_CAMERA_ID:
            alert = self.by_disk.get((event.kind, *system_alerts.disk_of(event.evidence)))
            return alert if alert is not None and alert.is_open else None
        alert = self.by_camera.get((event.camera_id, event.kind))
        if alert is not None and alert.is_open:
            return alert
        if event.kind not in self.settings.incident_kinds:
            return None
        since = _at(event.at) - timedelta(seconds=self.settings.merge_window_seconds)
        candidates = [a for a in self.by_unit.get((facts.unit_id, event.kind), ())
                      if a.is_open and a.last_at >= since and a.latitude is not None]
        if not candidates:
            return None
        near = self.policy.nearby(facts, np.array([a.latitude for a in candidates], np.float64),
                                  np.array([a.longitude for a in candidates], np.float64))
        hits = np.flatnonzero(near)
        return candidates[int(hits[0])] if len(hits) else None

    # -- changing --------------------------------------------------------------------------
    def _touch(self, alert: Alert, change: str) -> None:
        """Announce `alert`'s change to its owner's part of the tree: the alert's, never that of
        the camera whose event it was (a camera moved to another unit leaves its open alert
        with the unit that owned it when it opened)."""
        self.touched.setdefault(id(alert), (alert, change, self.owner_paths[id(alert)]))

    def _create(self, event: Event, facts: CameraFacts) -> None:
        at = _at(event.at)
        chain = facts.chain
        system = facts.camera_id == SYSTEM_CAMERA_ID
        severity = self.policy.severity(event.kind, event.score, 1, facts, event.evidence)
        day = self.policy.case_day(self.now)
        sequence = take(self.session, f"case:{facts.unit_code}:{day}")
        alert = Alert(
            code=self.policy.case_code(facts.unit_code, self.now, sequence), kind=event.kind, severity=severity,
            severity_rank=severity_rank(severity), state=AlertState.new.value,
            camera_id=None if system else facts.camera_id, camera_ids=[] if system else [facts.camera_id],
            unit_id=facts.unit_id, level_unit_id=facts.unit_id,
            addressed=self.policy.addressed(chain, len(chain) - 1, severity), escalations=0,
            latitude=facts.latitude, longitude=facts.longitude, score=event.score, event_count=1, first_at=at,
            last_at=at, snapshot=event.evidence.get("snapshot"), evidence=event.evidence,
            level_since=min(at, self.now))  # when it happened, never later than our clock
        set_deadlines(alert, self.policy, facts.unit_path)
        if event.kind == outages.OFFLINE:
            outages.opened(alert, at)
            # its return may have been handled first, alert-less: the registry remembers it
            # (the sweep closes it once the clock has run out, even with no recovery time)
            outages.seen_back(alert, self.seen_online.get(facts.camera_id), self.now,
                              self.settings.offline_recovery_seconds)
        self.session.add(alert)
        self._index(alert, facts.unit_path)
        self._touch(alert, "created")
        self.audit_rows.append((alert, "alert.create", None))
        self.members.append((event, alert))
        lag = (self.now - at).total_seconds()
        if lag > self.settings.claim_idle_seconds:  # it waited (an outbox, a dead engine): say what it costs
            log.warning("alert_event_late", extra={
                "camera_id": alert.camera_id, "kind": event.kind, "lag_seconds": round(lag, 1),
                "overdue": alert.ack_due_at is not None and alert.ack_due_at <= self.now})

    def _merge(self, alert: Alert, event: Event, facts: CameraFacts, announce: str = "event") -> None:
        """`event` joins `alert`. Its camera's facts count for severity (tags, zones); the
        chain, level, addressed units and deadlines are the alert's own owner's. `announce`:
        the feed change it makes ("": none, the alert changes quietly)."""
        at = _at(event.at)
        owner_path = self.owner_paths[id(alert)]
        if at < alert.first_at and alert.level_since == alert.first_at:
            # an earlier sighting that waited (claimed from a dead engine): the deadlines of the
            # level the alert opened at count from it
            alert.level_since = at
            due = (alert.ack_due_at, alert.resolve_due_at)
            set_deadlines(alert, self.policy, owner_path)
            alert.ack_due_at, alert.resolve_due_at = _earlier(due[0], alert.ack_due_at), _earlier(
                due[1], alert.resolve_due_at)
        alert.event_count += 1
        alert.last_at = max(alert.last_at, at)
        alert.first_at = min(alert.first_at, at)
        alert.score = max(alert.score, event.score)
        if event.kind != outages.OFFLINE:  # an offline alert's evidence is kept by `outages`
            alert.evidence = event.evidence
        alert.snapshot = event.evidence.get("snapshot") or alert.snapshot
        if facts.camera_id != SYSTEM_CAMERA_ID and facts.camera_id not in alert.camera_ids:
            alert.camera_ids = [*alert.camera_ids, facts.camera_id]
            self.by_camera.setdefault((facts.camera_id, alert.kind), alert)
        severity = self.policy.severity(alert.kind, alert.score, alert.event_count, facts, event.evidence)
        if severity_rank(severity) > alert.severity_rank:
            before = {"severity": alert.severity}
            chain = path_ids(owner_path)
            due = (alert.ack_due_at, alert.resolve_due_at)
            alert.severity, alert.severity_rank = severity, severity_rank(severity)
            alert.addressed = self.policy.addressed(chain, level_index(chain, alert.level_unit_id), severity)
            set_deadlines(alert, self.policy, owner_path)  # a graver alert is due sooner, never later
            alert.ack_due_at = _earlier(due[0], alert.ack_due_at)
            alert.resolve_due_at = _earlier(due[1], alert.resolve_due_at)
            self.audit_rows.append((alert, "alert.severity", before))
            self._touch(alert, "severity")
        if announce:
            self._touch(alert, announce)
        self.members.append((event, alert))

    def _camera_back(self, event: Event) -> bool:
        """A camera back online starts its offline alert's recovery clock (the sweep closes it
        when the clock runs out); with no recovery time, it closes the alert at once. False
        when the camera has no open offline alert: the event is taken and left out."""
        alert = self.by_camera.get((event.camera_id, outages.OFFLINE))
        if alert is None or not alert.is_open:
            return False
        alert.event_count += 1
        alert.last_at = max(alert.last_at, _at(event.at))
        outages.came_online(alert, _at(event.at), self.now, self.settings.offline_recovery_seconds)
        self.members.append((event, alert))
        if self.settings.offline_recovery_seconds == 0 and alert.clears_at is not None:
            self._settle(alert, outages.RECOVERED)
        return True

    def _system(self, event: Event, result: Absorbed) -> None:
        """An event about the deployment itself (camera 0): it opens or joins the system alert
        of its disk (host and path: data and video may be on separate disks), or resolves it."""
        host, path = system_alerts.disk_of(event.evidence)
        if event.kind in system_alerts.CLOSES:
            opener, feedback = system_alerts.CLOSES[event.kind]
            alert = self.by_disk.get((opener, host, path))
            if alert is None or not alert.is_open:
                result.ignored += 1  # nothing open: taken and left out
                return
            alert.event_count += 1
            alert.last_at = max(alert.last_at, _at(event.at))
            self.members.append((event, alert))
            self._settle(alert, feedback)
            return
        if not self.policy.alerting(event.kind):
            result.ignored += 1
            return
        if self._system_owner is None:
            self._system_owner = system_alerts.owner(self.session, self.settings)
        if self._system_owner is None:
            result.rejected.append((event, f"no root unit to own a system alert ({event.kind} from {host})"))
            return
        self._absorb(event, self._system_owner, result)

    def _settle(self, alert: Alert, feedback: str) -> None:
        """Resolve `alert` now: its cause went away."""
        before = settle(alert, self.now, feedback)
        self._touch(alert, "resolved")
        self.audit_rows.append((alert, "alert.resolve", before))

    def _write(self, result: Absorbed) -> None:
        """Alerts first (their row locks), then their events, the feed, the audit chain."""
        self.session.flush()
        if self.members:  # a batch of events no alert took (a lone camera_online) inserts none
            self.session.execute(insert(AlertEvent), [
                {"event_id": e.event_id, "alert_id": a.id, "camera_id": e.camera_id, "kind": e.kind,
                 "at": _at(e.at), "score": e.score, "evidence": audit.jsonable(e.evidence) or {}}
                for e, a in self.members])
        result.changes = [feed.Change(a, change, ENGINE_ACTOR, path) for a, change, path in self.touched.values()]
        result.last_change = feed.append(self.session, result.changes)
        audit.record_many(self.session, [
            audit.audit_row(ENGINE_ACTOR, action, "alert", a.id, a.unit_id, before,
                            {"code": a.code, "state": a.state, "severity": a.severity, "camera_id": a.camera_id,
                             "level_unit_id": a.level_unit_id})
            for a, action, before in self.audit_rows])


def _is_system(event: Event) -> bool:
    return event.camera_id == SYSTEM_CAMERA_ID and event.kind in SYSTEM_KINDS


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return min(a, b)
