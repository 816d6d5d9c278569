"""Per-camera suppressions: the false alarms operators taught a camera (`detectors.suppression`).

A row is one flame or smoke box of an alert an operator marked `false_alarm`: the camera, the
kind, the box (normalised), its appearance, the alert that taught it, who and when. The alert
engine's action writes them (`learn`, in the transaction of the action, audited); the API lists
and deletes them (`listed`, `forget`); the worker holding the camera loads them with its rules
(`for_cameras`) and adds how many candidates each one stopped (`add_hits`), which the KPIs
sum per unit (`by_unit`). Every change is followed by an `update` of the camera on the
registry feed, so the worker reloads the camera within a second.

What comes from events is checked here, since anything that can write to Redis can write an
event: only flame and smoke, at most `MAX_BOXES_PER_EVENT` boxes per event, boxes inside the
picture, appearances of exactly `DESCRIPTOR_SIZE` finite numbers in 0..1. A camera keeps at
most `MAX_PER_CAMERA` suppressions: past that, the oldest go (and the audit entry says which),
so an operator's action never fails and a camera's table stays small.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import numpy as np
from sqlalchemy import JSON, ForeignKey, Integer, String, Text, bindparam, cast, delete, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from config.database import Base, UTCDateTime, utcnow
from config.errors import NotFound
from detectors.rules import FIRE_KINDS
from detectors.suppression import DESCRIPTOR_SIZE, Suppression, kind_codes, novel
from registry import audit
from registry.cameras import Camera
from registry.units import Unit, rolled_up, units_in_scope

log = logging.getLogger("lookout.registry")
MAX_PER_CAMERA = 200
MAX_BOXES_PER_EVENT = 32
MAX_EVENTS = 500  # of one alert, the newest: a day-long false alarm teaches from its last ones
MAX_SAMPLES = 400  # boxes of one camera in one alert, the newest: bounds the (samples × samples) comparison


class CameraSuppression(Base):
    __tablename__ = "camera_suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    box: Mapped[list[float]] = mapped_column(JSON)  # x1, y1, x2, y2 in 0..1
    appearance: Mapped[list[float]] = mapped_column(JSON)  # detectors.suppression.describe
    # the alert that taught it; no foreign key: the registry does not depend on the alert
    # engine's tables (a worker never loads them), and alerts are never deleted
    alert_id: Mapped[int | None] = mapped_column(Integer, index=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    hits: Mapped[int] = mapped_column(Integer, default=0)  # candidates it stopped (the workers count)
    last_hit_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class Stored:
    """A suppression row as read back: `box` and `appearance` are None when the row does not
    hold what learning wrote (edited in the database by hand, or another descriptor version) —
    such a row is skipped and logged, never a crash of the worker or a 500 of the API."""

    id: int
    camera_id: int
    kind: str
    box: list[float] | None
    appearance: list[float] | None
    alert_id: int | None
    created_by: str
    created_at: datetime
    hits: int
    last_hit_at: datetime | None

    @property
    def usable(self) -> bool:
        return self.box is not None and self.appearance is not None

    def suppression(self) -> Suppression:
        assert self.box is not None and self.appearance is not None
        return Suppression(self.id, self.camera_id, self.kind, tuple(self.box), tuple(self.appearance))  # type: ignore[arg-type]

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "camera_id": self.camera_id, "kind": self.kind, "box": self.box,
                "appearance": self.appearance, "alert_id": self.alert_id, "created_by": self.created_by,
                "created_at": self.created_at, "hits": self.hits, "last_hit_at": self.last_hit_at}


def stored(session: Session, *where: Any) -> list[Stored]:
    """The rows matching `where`, oldest first, each checked on its own: the JSON columns are
    read as text and parsed row by row, since one malformed value would otherwise fail the
    whole result (SQLite stores whatever text a hand edit put there)."""
    t = CameraSuppression
    query = (select(t.id, t.camera_id, t.kind, cast(t.box, Text), cast(t.appearance, Text), t.alert_id,
                    t.created_by, t.created_at, t.hits, t.last_hit_at).where(*where).order_by(t.id))
    out = []
    for sid, camera_id, kind, box_text, look_text, alert_id, created_by, created_at, hits, last_hit_at in (
            session.execute(query)):
        try:
            pair = samples(kind, {"boxes": [json.loads(box_text or "null")],
                                  "appearance": [json.loads(look_text or "null")]})
        except (ValueError, RecursionError):
            pair = []
        box, look = pair[0] if pair else (None, None)
        if not pair:
            log.warning("suppression_invalid", extra={"camera_id": camera_id, "suppression_id": sid})
        out.append(Stored(sid, camera_id, str(kind), box, look, alert_id, str(created_by), created_at,
                          int(hits or 0), last_hit_at))
    return out


#: a worker's clock may run a little behind the database's: an event stamped that much before
#: its camera's registration is still that camera's
CLOCK_SLACK = timedelta(seconds=60)


def _as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC), PostgreSQL aware ones."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _numbers(value: object, count: int, low: float, high: float) -> list[float] | None:
    if not isinstance(value, list) or len(value) != count:
        return None
    # a range test, not math.isfinite: it refuses nan and infinities too, and an integer of 400
    # digits (valid JSON) compares exactly where isfinite would overflow
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high for v in value):
        return None
    return [float(v) for v in value]


def samples(kind: str, evidence: object) -> list[tuple[list[float], list[float]]]:
    """The (box, appearance) pairs of one event that can be taught; [] when the event is not
    flame or smoke, or has no appearance (made before this existed). Malformed entries are
    left out (an event is data from outside)."""
    if kind not in FIRE_KINDS or not isinstance(evidence, dict):
        return []
    boxes, looks = evidence.get("boxes"), evidence.get("appearance")
    if not isinstance(boxes, list) or not isinstance(looks, list):
        return []
    out = []
    for box, look in islice(zip(boxes, looks), MAX_BOXES_PER_EVENT):
        b, a = _numbers(box, 4, 0.0, 1.0), _numbers(look, DESCRIPTOR_SIZE, 0.0, 1.0)
        if b is not None and a is not None and b[0] < b[2] and b[1] < b[3]:
            out.append((b, a))
    return out


def _arrays(rows: Iterable[tuple[str, list[float], list[float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    items = list(rows)
    return (np.array([b for _, b, _ in items], np.float32).reshape(-1, 4),
            kind_codes(np.array([k for k, _, _ in items], dtype=object)),
            np.array([a for _, _, a in items], np.float32).reshape(-1, DESCRIPTOR_SIZE))


def learn(session: Session, alert_id: int, events: list[tuple[int, str, object, datetime]], actor: str,
          scope: str = "") -> tuple[set[int], list[dict[str, Any]]]:
    """Suppressions from the events `(camera_id, kind, evidence, at)` of the alert `alert_id`
    marked false alarm by `actor` (whose unit scope is `scope`): what each camera learns that it
    did not know (`novel`), the oldest dropped past `MAX_PER_CAMERA`. Returns the cameras
    changed (to tell their workers after the commit) and one audit row per camera (for the
    caller's transaction).

    Only cameras that are still the ones that saw the events teach: in the marker's scope (a
    camera moved to another unit since is no longer theirs to teach) and registered before the
    earliest of its events (SQLite gives a deleted camera's id to the next one registered; the
    new camera must not learn the old one's false alarms)."""
    taught: dict[int, list[tuple[str, list[float], list[float]]]] = {}
    first_seen: dict[int, datetime] = {}
    for camera_id, kind, evidence, at in events[-MAX_EVENTS:]:
        taught.setdefault(camera_id, []).extend((kind, b, a) for b, a in samples(kind, evidence))
        first_seen[camera_id] = min(at, first_seen.get(camera_id, at))
    taught = {c: rows[-MAX_SAMPLES:] for c, rows in taught.items() if rows}
    if not taught:
        return set(), []
    found = session.execute(select(Camera.id, Camera.unit_id, Camera.created_at, Unit.path)
                            .join(Unit, Unit.id == Camera.unit_id).where(Camera.id.in_(list(taught)))).all()
    units = {camera_id: unit_id for camera_id, unit_id, created_at, path in found
             if path.startswith(scope) and _as_utc(created_at) - CLOCK_SLACK <= _as_utc(first_seen[camera_id])}
    changed, rows = set(), []
    for camera_id, items in sorted(taught.items()):
        if camera_id not in units:  # deleted, moved out of scope, or its id given to another camera since
            continue
        known = stored(session, CameraSuppression.camera_id == camera_id)
        boxes, codes, looks = _arrays(items)
        k_boxes, k_codes, k_looks = _arrays((s.kind, s.box, s.appearance) for s in known if s.usable)
        new = [items[i] for i in np.flatnonzero(novel(boxes, codes, looks, k_boxes, k_codes, k_looks))]
        if not new:
            continue
        added = [CameraSuppression(camera_id=camera_id, kind=kind, box=[round(v, 4) for v in box],
                                   appearance=[round(v, 4) for v in look], alert_id=alert_id, created_by=actor,
                                   hits=0) for kind, box, look in new[-MAX_PER_CAMERA:]]
        session.add_all(added)
        over = len(known) + len(added) - MAX_PER_CAMERA
        dropped = [s.id for s in known[:max(0, over)]]
        if dropped:
            session.execute(delete(CameraSuppression).where(CameraSuppression.id.in_(dropped)))
        session.flush()
        changed.add(camera_id)
        rows.append(audit.audit_row(actor, "camera.suppressions.learn", "camera", camera_id, units[camera_id], None, {
            "alert_id": alert_id, "added": [s.id for s in added], "kinds": sorted({s.kind for s in added}),
            "dropped_oldest": dropped, "limit": MAX_PER_CAMERA}))
        log.info("suppressions_learned", extra={"camera_id": camera_id, "alert_id": alert_id, "added": len(added),
                                                "dropped": len(dropped)})
    return changed, rows


def unlearn(session: Session, alert_id: int, actor: str, reason: str) -> tuple[set[int], list[dict[str, Any]]]:
    """Remove what the alert `alert_id` taught (it was reopened: not a false alarm after all);
    the cameras changed and one audit row per camera."""
    rows = session.execute(select(CameraSuppression.id, CameraSuppression.camera_id, Camera.unit_id)
                           .join(Camera, Camera.id == CameraSuppression.camera_id)
                           .where(CameraSuppression.alert_id == alert_id)).all()
    if not rows:
        return set(), []
    session.execute(delete(CameraSuppression).where(CameraSuppression.id.in_([r.id for r in rows])))
    by_camera: dict[int, tuple[int, list[int]]] = {}
    for sid, camera_id, unit_id in rows:
        by_camera.setdefault(camera_id, (unit_id, []))[1].append(sid)
    entries = [audit.audit_row(actor, "camera.suppressions.delete", "camera", camera_id, unit_id,
                               {"ids": ids}, {"alert_id": alert_id, "reason": reason})
               for camera_id, (unit_id, ids) in sorted(by_camera.items())]
    return set(by_camera), entries


def listed(session: Session, camera_id: int) -> list[Stored]:
    """The camera's suppressions that are in force, oldest first (a malformed row is left out and
    logged; deleting all of them removes it too)."""
    return [row for row in stored(session, CameraSuppression.camera_id == camera_id) if row.usable]


def forget(session: Session, camera: Camera, suppression_id: int | None, actor: str) -> int:
    """Delete one suppression of `camera` (404 when it is not one of that camera's) or all of
    them (None); audited. How many went."""
    query = select(CameraSuppression).where(CameraSuppression.camera_id == camera.id)
    if suppression_id is not None:
        query = query.where(CameraSuppression.id == suppression_id)
    gone = list(session.scalars(query))
    if suppression_id is not None and not gone:
        raise NotFound(f"camera {camera.id} has no suppression {suppression_id}", camera_id=camera.id,
                       suppression_id=suppression_id)
    if not gone:
        return 0
    session.execute(delete(CameraSuppression).where(CameraSuppression.id.in_([s.id for s in gone])))
    audit.record(session, actor, "camera.suppressions.delete", "camera", camera.id, camera.unit_id,
                 {"ids": [s.id for s in gone], "alert_ids": sorted({s.alert_id for s in gone if s.alert_id})},
                 {"remaining": len(listed(session, camera.id))})
    return len(gone)


def for_cameras(session: Session, camera_ids: Iterable[int]) -> dict[int, list[Suppression]]:
    """What the worker loads with the cameras' rules: every camera of `camera_ids`, with its
    suppressions ([] for none)."""
    ids = list(camera_ids)
    out: dict[int, list[Suppression]] = {c: [] for c in ids}
    for row in stored(session, CameraSuppression.camera_id.in_(ids)):
        if row.usable:  # else the camera goes on without it, and the log says which
            out[row.camera_id].append(row.suppression())
    return out


def add_hits(session: Session, hits: dict[int, int], at: datetime) -> None:
    """Add the candidates each suppression stopped (a worker's counts since it last wrote);
    rows deleted meanwhile are skipped."""
    if not hits:
        return
    table = CameraSuppression.__table__
    statement = (update(table).where(table.c.id == bindparam("sid"))
                 .values(hits=table.c.hits + bindparam("n"), last_hit_at=at))
    session.connection().execute(statement, [{"sid": sid, "n": n} for sid, n in sorted(hits.items())])


def by_unit(session: Session, scope: str) -> dict[int, tuple[int, int]]:
    """(suppressions, candidates they stopped) for every unit in `scope`, each rolled up over
    its subtree."""
    units = units_in_scope(session, scope)
    rows = session.execute(
        select(Camera.unit_id, func.count(CameraSuppression.id), func.coalesce(func.sum(CameraSuppression.hits), 0))
        .join(Camera, Camera.id == CameraSuppression.camera_id)
        .where(Camera.unit_id.in_(list(units))).group_by(Camera.unit_id)).all()
    totals = {uid: [0, 0] for uid in units}
    for unit_id, count, hits in rows:
        for ancestor in rolled_up(units, unit_id):  # the unit and every ancestor within the scope
            totals[ancestor][0] += int(count)
            totals[ancestor][1] += int(hits)
    return {uid: (c, h) for uid, (c, h) in totals.items()}
