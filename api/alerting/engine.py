"""The alert engine: consumes `lookout:events` and makes every event part of exactly one alert.

It reads through the Redis consumer group `alert-engine`, so several engines share the work.
Each batch is one database transaction (the alerts, the events they merged, the feed, the
audit rows); only after it commits are the stream entries acknowledged. A crash before the
commit leaves the entries pending, and they are delivered again; a crash after it makes the
redelivery find the event ids already stored and skip them. Entries pending at a consumer
that has been silent for `claim_idle_seconds` (a dead engine) are claimed by a live one.

Engines take turns per batch (the `alert_engine` counter row is the lock), so two engines
never both open an alert for the same fire.

An alert belongs to the unit that owned its camera when it opened (`Alert.unit_id`), for its
whole life. Events that join it are routed by the alert: the feed's scope, the units it is
addressed to, its deadlines and a rise of its severity all follow its owner's chain, even when
the camera has since been moved to another unit (the camera's own facts, tags and zones, still
count for severity). Once that alert is closed, the camera's next event opens a new alert,
owned by the camera's unit of that moment.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import redis
from sqlalchemy import and_, insert, or_, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from api.alerting import feed
from api.alerting.counters import take
from api.alerting.escalation import sweep
from api.alerting.feed import Change
from api.alerting.lifecycle import set_deadlines
from api.alerting.model import OPEN_STATES, Alert, AlertEvent, AlertState
from api.alerting.policy import AlertPolicy, CameraFacts, level_index, path_ids
from config.alerting import severity_rank
from config.database import utcnow
from detectors.events import EVENTS_STREAM, Event
from ingest import audit
from ingest.cameras import Camera, CameraTag
from ingest.units import Unit

GROUP = "alert-engine"
ENGINE_TURN = "alert_engine"
REJECTED_STREAM = "lookout:events:rejected"
ACTOR = "system:alert-engine"
log = logging.getLogger("lookout.alerts")


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def load_cameras(session: Session, ids: list[int]) -> dict[int, CameraFacts]:
    """Routing facts of the cameras `ids`, with their unit's code and path, in two queries."""
    tags: dict[int, set[str]] = {}
    tag_rows = session.execute(select(CameraTag.camera_id, CameraTag.tag).where(CameraTag.camera_id.in_(ids)))
    for camera_id, tag in tag_rows:
        tags.setdefault(camera_id, set()).add(tag)
    rows = session.execute(
        select(Camera.id, Camera.unit_id, Unit.code, Unit.path, Camera.latitude, Camera.longitude)
        .join(Unit, Unit.id == Camera.unit_id).where(Camera.id.in_(ids)))
    return {r.id: CameraFacts(r.id, r.unit_id, r.code, r.path, r.latitude, r.longitude,
                              frozenset(tags.get(r.id, ()))) for r in rows}


@dataclass
class Absorbed:
    """What one batch did."""

    changes: list[Change] = field(default_factory=list)
    created: int = 0
    merged: int = 0
    duplicates: int = 0
    ignored: int = 0
    last_change: int = 0
    unknown_cameras: list[Event] = field(default_factory=list)


class Absorber:
    """One transaction's worth of events turned into alerts (new or joined)."""

    def __init__(self, session: Session, policy: AlertPolicy, now: datetime) -> None:
        self.session, self.policy, self.now = session, policy, now
        self.settings = policy.settings
        self.by_camera: dict[tuple[int, str], Alert] = {}
        self.by_unit: dict[tuple[int, str], list[Alert]] = {}
        self.touched: dict[int, tuple[Alert, str, str]] = {}  # id(alert) → (alert, change, unit path)
        self.owner_paths: dict[int, str] = {}  # id(alert) → its owner unit's path, the scope of its changes
        self.audit_rows: list[tuple[Alert, str, dict[str, Any] | None]] = []
        self.members: list[tuple[Event, Alert]] = []

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
        cameras = load_cameras(self.session, sorted({e.camera_id for e in fresh.values()}))
        self._load_open(cameras, {e.kind for e in fresh.values()} | {"camera_offline"})
        for event in sorted(fresh.values(), key=lambda e: e.at):
            facts = cameras.get(event.camera_id)
            if facts is None:
                result.unknown_cameras.append(event)
            elif event.kind == "camera_online":
                result.ignored += 0 if self._camera_back(event) else 1
            elif not self.policy.alerting(event.kind):
                result.ignored += 1
            else:
                alert = self._joinable(event, facts)
                if alert is None:
                    self._create(event, facts)
                    result.created += 1
                else:
                    self._merge(alert, event, facts)
                    result.merged += 1
        self._write(result)
        return result

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
        for camera_id in alert.camera_ids:
            self.by_camera.setdefault((camera_id, alert.kind), alert)
        self.by_unit.setdefault((alert.unit_id, alert.kind), []).append(alert)

    def _joinable(self, event: Event, facts: CameraFacts) -> Alert | None:
        """The open alert this event joins: its camera's own, else a nearby, recent incident
        of the same unit and kind."""
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
        severity = self.policy.severity(event.kind, event.score, 1, facts, event.evidence)
        day = self.policy.case_day(self.now)
        sequence = take(self.session, f"case:{facts.unit_code}:{day}")
        alert = Alert(
            code=self.policy.case_code(facts.unit_code, self.now, sequence), kind=event.kind, severity=severity,
            severity_rank=severity_rank(severity), state=AlertState.new.value, camera_id=facts.camera_id,
            camera_ids=[facts.camera_id], unit_id=facts.unit_id, level_unit_id=facts.unit_id,
            addressed=self.policy.addressed(chain, len(chain) - 1, severity), escalations=0,
            latitude=facts.latitude, longitude=facts.longitude, score=event.score, event_count=1, first_at=at,
            last_at=at, snapshot=event.evidence.get("snapshot"), evidence=event.evidence, level_since=self.now)
        set_deadlines(alert, self.policy, facts.unit_path)
        self.session.add(alert)
        self._index(alert, facts.unit_path)
        self._touch(alert, "created")
        self.audit_rows.append((alert, "alert.create", None))
        self.members.append((event, alert))

    def _merge(self, alert: Alert, event: Event, facts: CameraFacts) -> None:
        """`event` joins `alert`. Its camera's facts count for severity (tags, zones); the
        chain, level, addressed units and deadlines are the alert's own owner's."""
        at = _at(event.at)
        alert.event_count += 1
        alert.last_at = max(alert.last_at, at)
        alert.first_at = min(alert.first_at, at)
        alert.score = max(alert.score, event.score)
        alert.evidence = event.evidence
        alert.snapshot = event.evidence.get("snapshot") or alert.snapshot
        if facts.camera_id not in alert.camera_ids:
            alert.camera_ids = [*alert.camera_ids, facts.camera_id]
            self.by_camera.setdefault((facts.camera_id, alert.kind), alert)
        severity = self.policy.severity(alert.kind, alert.score, alert.event_count, facts, event.evidence)
        if severity_rank(severity) > alert.severity_rank:
            before = {"severity": alert.severity}
            owner_path = self.owner_paths[id(alert)]
            chain = path_ids(owner_path)
            due = (alert.ack_due_at, alert.resolve_due_at)
            alert.severity, alert.severity_rank = severity, severity_rank(severity)
            alert.addressed = self.policy.addressed(chain, level_index(chain, alert.level_unit_id), severity)
            set_deadlines(alert, self.policy, owner_path)  # a graver alert is due sooner, never later
            alert.ack_due_at = _earlier(due[0], alert.ack_due_at)
            alert.resolve_due_at = _earlier(due[1], alert.resolve_due_at)
            self.audit_rows.append((alert, "alert.severity", before))
            self._touch(alert, "severity")
        self._touch(alert, "event")
        self.members.append((event, alert))

    def _camera_back(self, event: Event) -> bool:
        """A camera that comes back online closes its open offline alert."""
        alert = self.by_camera.get((event.camera_id, "camera_offline"))
        if alert is None or not alert.is_open:
            return False
        before = {"state": alert.state}
        alert.state, alert.closed_at = AlertState.resolved.value, self.now
        alert.feedback = "camera back online"
        alert.ack_due_at = alert.resolve_due_at = None
        alert.event_count += 1
        alert.last_at = max(alert.last_at, _at(event.at))
        self._touch(alert, "resolved")
        self.audit_rows.append((alert, "alert.resolve", before))
        self.members.append((event, alert))
        return True

    def _write(self, result: Absorbed) -> None:
        """Alerts first (their row locks), then their events, the feed, the audit chain."""
        self.session.flush()
        self.session.execute(insert(AlertEvent), [
            {"event_id": e.event_id, "alert_id": a.id, "camera_id": e.camera_id, "kind": e.kind, "at": _at(e.at),
             "score": e.score, "evidence": audit.jsonable(e.evidence) or {}} for e, a in self.members])
        result.changes = [feed.Change(a, change, ACTOR, path) for a, change, path in self.touched.values()]
        result.last_change = feed.append(self.session, result.changes)
        audit.record_many(self.session, [
            audit.audit_row(ACTOR, action, "alert", a.id, a.unit_id, before,
                            {"code": a.code, "state": a.state, "severity": a.severity, "camera_id": a.camera_id,
                             "level_unit_id": a.level_unit_id})
            for a, action, before in self.audit_rows])


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return min(a, b)


class AlertEngine:
    """The consumer loop around `Absorber`: read or claim a batch, commit it, acknowledge it."""

    def __init__(self, sessions: sessionmaker[Session], client: redis.Redis, policy: AlertPolicy,
                 consumer: str | None = None, stream: str = EVENTS_STREAM) -> None:
        self.sessions, self.client, self.policy, self.stream = sessions, client, policy, stream
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        settings = policy.settings
        self.batch = settings.engine_batch
        self.claim_idle_ms = int(settings.claim_idle_seconds * 1000)
        self.sweep_every = settings.sweep_seconds
        self.stop_event = threading.Event()
        self._last_claim = 0.0
        self._last_sweep = 0.0
        self._unfinished: list[tuple[str, dict[str, str]]] = []  # read, not committed: a database or Redis error
        self.totals = Absorbed()

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def run(self, block_ms: int = 500) -> None:
        log.info("alert_engine_started", extra={"consumer": self.consumer})
        backoff = 0.5
        while not self.stop_event.is_set():
            try:
                self.step(block_ms)
                backoff = 0.5
            except (redis.ConnectionError, redis.TimeoutError, OperationalError) as exc:
                log.warning("alert_engine_waiting", extra={"consumer": self.consumer, "error": str(exc)[:300],
                                                          "retry_in": backoff})
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception:  # noqa: BLE001 - a bug must not stop alerting: log it, wait, go on
                log.exception("alert_engine_error", extra={"consumer": self.consumer, "retry_in": backoff})
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        log.info("alert_engine_stopped", extra={"consumer": self.consumer})

    def step(self, block_ms: int = 500) -> int:
        """One round: deadlines if due, entries of dead consumers, then new entries."""
        now = time.monotonic()
        if now - self._last_sweep >= self.sweep_every:
            self._last_sweep = now
            with self.sessions() as session:
                feed.ring(self.client, sweep(session, self.policy, utcnow()))
        entries, self._unfinished = self._unfinished, []
        if not entries and now - self._last_claim >= self.claim_idle_ms / 2000:
            self._last_claim = now
            entries = self._claim()
        if not entries:
            entries = self._read(block_ms)
        if entries:
            try:
                self.handle(entries)
            except (redis.RedisError, OperationalError):
                self._unfinished = entries  # still pending at this consumer: try them first next round
                raise
        return len(entries)

    def _read(self, block_ms: int) -> list[tuple[str, dict[str, str]]]:
        try:
            reply = self.client.xreadgroup(GROUP, self.consumer, {self.stream: ">"}, count=self.batch, block=block_ms)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()  # Redis came back without its data: start the group again
            return []
        return list(reply[0][1]) if reply else []

    def _claim(self) -> list[tuple[str, dict[str, str]]]:
        try:
            reply = self.client.xautoclaim(self.stream, GROUP, self.consumer, self.claim_idle_ms, "0-0",
                                           count=self.batch)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()
            return []
        claimed = [(entry_id, data) for entry_id, data in reply[1] if data is not None]
        if claimed:
            log.info("alert_entries_claimed", extra={"consumer": self.consumer, "entries": len(claimed)})
        return claimed

    def handle(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        """Commit the batch's alerts, then acknowledge its entries; entries that cannot be read,
        or that fail alone, go to `lookout:events:rejected` instead of blocking the stream."""
        events: list[Event] = []
        entry_of: dict[str, str] = {}  # event id → stream entry id
        bad: list[tuple[str, dict[str, str], str]] = []
        for entry_id, data in entries:
            try:
                event = Event.from_fields(data)
            except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
                bad.append((entry_id, data, f"unreadable event: {exc}"))
                continue
            events.append(event)
            entry_of.setdefault(event.event_id, entry_id)

        def unknown(found: list[Event]) -> None:
            bad.extend((entry_of[e.event_id], e.fields(), f"camera {e.camera_id} does not exist") for e in found)

        try:
            unknown(self._commit(events))
        except (redis.RedisError, OperationalError):
            raise
        except Exception as exc:  # noqa: BLE001 - find the event that fails, keep the rest
            log.warning("alert_batch_failed", extra={"consumer": self.consumer, "error": str(exc)[:300]})
            for event in events:
                try:
                    unknown(self._commit([event]))
                except (redis.RedisError, OperationalError):
                    raise
                except Exception as one:  # noqa: BLE001
                    bad.append((entry_of[event.event_id], event.fields(), f"{type(one).__name__}: {one}"))
        for entry_id, data, reason in bad:
            log.error("alert_event_rejected", extra={"entry": entry_id, "camera_id": data.get("camera_id"),
                                                     "reason": reason[:300]})
            self.client.xadd(REJECTED_STREAM, {**{k: str(v) for k, v in data.items()}, "reason": reason[:1000],
                                               "entry": entry_id}, maxlen=100_000, approximate=True)
        self.client.xack(self.stream, GROUP, *[entry_id for entry_id, _ in entries])

    def _commit(self, events: list[Event]) -> list[Event]:
        """Absorb `events` in one transaction (retried when someone changed an alert meanwhile);
        the events whose camera does not exist."""
        for attempt in range(5):
            with self.sessions() as session:
                try:
                    result = Absorber(session, self.policy, utcnow()).run(events)
                    session.commit()
                except StaleDataError:  # a person changed one of these alerts meanwhile: again
                    session.rollback()
                    if attempt == 4:
                        raise
                    continue
            self._count(result)
            feed.ring(self.client, result.last_change)
            return result.unknown_cameras
        return []

    def _count(self, result: Absorbed) -> None:
        for name in ("created", "merged", "duplicates", "ignored"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(result, name))
