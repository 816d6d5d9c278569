"""The registry rows of one worker's cameras: the status people see, written after the tracker
(`detectors.camera_health`) decided it, and kept true when the database was away.

A status the database refused stays pending (the last one per camera wins) and is written again
by the next ticks, backing off; the rows are compared with what the worker has settled every
refresh round and written again where they differ (a row rewritten behind the worker's back, or
a write that was lost).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from config.database import DATABASE_DOWN, utcnow  # a status write waits for the database to come back
from detectors.camera_rows import lookup
from registry.cameras import Camera

log = logging.getLogger("lookout.runner")
RETRY_FIRST, RETRY_MAX = 0.5, 4.0  # a status the database refused: again after, doubling
Row = dict[str, object]


class CameraStatuses:
    """Writes statuses to the registry; `error_of(camera_id)` is why a camera is not online."""

    def __init__(self, sessions: sessionmaker[Session], error_of: Callable[[int], str | None]) -> None:
        self.sessions = sessions
        self.error_of = error_of
        self.pending: dict[int, str] = {}  # statuses the database has not taken yet: the last wins
        self._retry_at = 0.0
        self._backoff = RETRY_FIRST
        self._waiting_since: float | None = None

    def rows(self, ids: list[int], statuses: list[str]) -> list[Row]:
        """The rows these statuses make: the error behind each one that is not online."""
        stamp = utcnow()
        rows = []
        for camera_id, status in zip(ids, statuses):
            error = None if status == "online" else (self.error_of(camera_id) or "no video received")
            row: Row = {"id": camera_id, "status": status, "last_error": error}
            if status == "online":
                row["last_seen_at"] = stamp
            rows.append(row)
        return rows

    def write(self, ids: list[int], statuses: list[str]) -> list[Row]:
        """Write these statuses now (raising what the database raises); the rows."""
        rows = self.rows(ids, statuses)
        table = Camera.__table__
        with self.sessions() as session:
            for seen in (True, False):
                group = [{"camera": r["id"], "new_status": r["status"], "error": r["last_error"],
                          "seen": r.get("last_seen_at")} for r in rows if ("last_seen_at" in r) == seen]
                if not group:
                    continue
                # Core, not the ORM's bulk update by primary key: that one raises StaleDataError
                # when one camera of the batch was deleted meanwhile, and the rollback took the
                # statuses of all the others with it (the tracker had already moved on)
                values = {"status": bindparam("new_status"), "last_error": bindparam("error")}
                if seen:
                    values["last_seen_at"] = bindparam("seen")
                session.execute(table.update().where(table.c.id == bindparam("camera")).values(**values), group)
            session.commit()
        return rows

    def queue(self, ids: list[int], statuses: list[str], now: float) -> None:
        """These statuses are due: written now if the database takes them, else later."""
        self.pending.update(zip(ids, statuses))
        self.write_pending(now)

    def write_pending(self, now: float) -> None:
        """Write the statuses the database has not taken yet, unless backing off after a refusal;
        one `camera_status_waiting` line per outage, one `camera_status_written` after it."""
        if not self.pending or now < self._retry_at:
            return
        ids = sorted(self.pending)
        try:
            self.write(ids, [self.pending[c] for c in ids])
        except DATABASE_DOWN as exc:
            if self._waiting_since is None:
                self._waiting_since = now
                log.warning("camera_status_waiting", extra={"cameras": len(ids), "sample": ids[:5],
                                                           "error": str(exc)[:300], "retry_in": self._backoff})
            self._retry_at = now + self._backoff
            self._backoff = min(self._backoff * 2, RETRY_MAX)
            return
        if self._waiting_since is not None:
            log.info("camera_status_written", extra={"cameras": len(ids), "sample": ids[:5],
                                                     "waited_s": round(now - self._waiting_since, 1)})
            self._waiting_since = None
        self.pending.clear()
        self._retry_at, self._backoff = 0.0, RETRY_FIRST

    def settle(self, camera_ids: set[int]) -> None:
        """Cameras leaving this worker: one last try at their pending statuses, then they are the
        next owner's to judge (it starts from the row and reads the stream itself)."""
        leaving = sorted(camera_ids & self.pending.keys())
        if not leaving:
            return
        try:
            self.write(leaving, [self.pending[c] for c in leaving])
        except DATABASE_DOWN as exc:
            log.warning("camera_status_dropped", extra={"cameras": len(leaving), "sample": leaving[:5],
                                                       "error": str(exc)[:300]})
        for camera_id in leaving:
            del self.pending[camera_id]

    def reassert(self, ids: np.ndarray, statuses: np.ndarray) -> None:
        """Write again every settled status (`ids`, `statuses`: the tracker's) its registry row no
        longer shows (the row was rewritten, recreated under the same id, or an earlier write was
        lost); no events: the change itself was announced when it happened."""
        if not len(ids):
            return
        with self.sessions() as session:
            stored = session.execute(select(Camera.id, Camera.status).where(Camera.id.in_(ids.tolist()))).all()
        if not stored:
            return
        stored_ids = np.array([r[0] for r in stored], np.int64)
        stored_status = np.array([r[1] for r in stored], object).astype(str)
        rows = lookup(stored_ids, ids)  # row of each settled camera, -1: deleted meanwhile
        found = rows >= 0
        stale = found.copy()
        stale[found] = stored_status[rows[found]] != statuses[found]
        if not stale.any():
            return
        self.write(ids[stale].tolist(), statuses[stale].tolist())
        log.warning("camera_status_reasserted", extra={
            "cameras": int(stale.sum()), "sample": ids[stale][:5].tolist(),
            "was": stored_status[rows[stale]][:5].tolist(), "now": statuses[stale][:5].tolist()})

    def refresh_seen(self, ids: list[int]) -> None:
        """`last_seen_at` of the cameras heard lately: now."""
        if not ids:
            return
        with self.sessions() as session:
            session.execute(update(Camera).where(Camera.id.in_(ids)).values(last_seen_at=utcnow()))
            session.commit()
