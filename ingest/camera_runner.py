"""The readers of one worker's leased cameras, and what comes out of them every tick.

`assign` / `release` are the worker's lease hooks; each reader also feeds its camera's
segment writer (`ingest.segments`), whose retention runs here once a minute. Each `tick`
hands the latest due frame of every camera to the detectors as ONE `FrameBatch` (video quality
and motion, then the detection stage of `ingest.detection`), turns what the readers saw into statuses
(`detectors.camera_health`, all cameras at once), writes the changes to the registry and
publishes `camera_offline` / `camera_online` events on `lookout:events`.

The registry row is the status people see, so it must follow what the readers see even when the
row changes behind the worker's back: a camera (re)assigned starts from the status its row
shows (`HealthTracker.assume`), and every `status_refresh_seconds` the statuses the worker has
settled are compared with the rows and written again where they differ.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from config.database import utcnow
from config.processes import trim_malloc
from detectors.camera_health import HealthRules, HealthTracker
from detectors.camera_rows import lookup
from detectors.events import EVENTS_STREAM, Event
from detectors.frames import FrameBatch
from detectors.rules import CameraRules
from detectors.video_quality import QualityMonitor, QualityReport
from ingest.cameras import Camera
from ingest.credentials import CredentialCipher, join_userinfo
from ingest.detection import DetectionStage
from ingest.fields import StreamUrl, has_control_characters
from ingest.media_paths import MediaFolders
from ingest.rules_spec import stored_spec
from ingest.segments import SegmentWriter, enforce_retention
from ingest.stream_figures import FigurePublisher
from ingest.stream_reader import StreamReader, latest_batch

log = logging.getLogger("lookout.runner")
SEEN_REFRESH_SECONDS = 15.0
EVENTS_MAXLEN = 1_000_000  # about a week of a large county's events; older ones are trimmed
RETENTION_SECONDS = 60.0


_STREAM_URL: TypeAdapter[str] = TypeAdapter(StreamUrl)


def malformed_stream_url(url: str) -> str | None:
    """Why `url` is not a stream URL the API would accept, or None when it is."""
    try:
        _STREAM_URL.validate_python(url)
    except ValidationError as exc:
        return str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
    return None


@dataclass(frozen=True)
class StreamSettings:
    size: tuple[int, int] = (640, 360)
    interval: float = 2.0
    read_timeout: float = 5.0
    open_timeout: float = 5.0
    segment_dir: Path | None = None  # None: keep no video
    segment_seconds: float = 10.0
    segment_max_age: float = 72 * 3600.0
    segment_max_bytes: int = 50 * 2**30
    figures_interval: float = 5.0  # seconds between publications of the stream figures
    # where `file:` streams may read from (`ingest.media_paths`); none: `file:` streams are refused
    media_dirs: tuple[Path, ...] = ()
    status_refresh_seconds: float = SEEN_REFRESH_SECONDS  # last_seen_at, and statuses re-asserted


class CameraRunner:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        cipher: CredentialCipher,
        client: redis.Redis,
        settings: StreamSettings = StreamSettings(),
        rules: HealthRules | None = None,
        reader_factory: Callable[..., StreamReader] = StreamReader,
        worker_id: str = "",
        detection: DetectionStage | None = None,
    ) -> None:
        self.sessions = sessions
        self.cipher = cipher
        self.client = client
        self.settings = settings
        self.health = HealthTracker(rules or HealthRules(offline_after=settings.read_timeout))
        self.reader_factory = reader_factory
        self.readers: dict[int, StreamReader] = {}
        self.errors_seen: dict[int, int] = {}
        self.failures: dict[int, str] = {}  # cameras that cannot even start a reader
        self.quality = QualityMonitor()
        self.detection = detection
        self.last_quality: QualityReport | None = None
        self._seen_refreshed = 0.0
        self.figures = FigurePublisher(client, worker_id)
        self._figures_published = 0.0
        self.segments: dict[int, SegmentWriter] = {}
        self._retention_run = 0.0
        self.media = MediaFolders(settings.media_dirs)

    # -- lease hooks ----------------------------------------------------------------------
    def assign(self, camera_ids: set[int]) -> None:
        with self.sessions() as session:
            rows = session.execute(
                select(Camera.id, Camera.main_stream_url, Camera.sub_stream_url, Camera.credentials_sealed,
                       Camera.detection_rules, Camera.status)
                .where(Camera.id.in_(list(camera_ids)))
            ).all()
        if self.detection is not None:
            self.detection.rules.update_rules({camera_id: self._rules_of(camera_id, stored)
                                               for camera_id, _, _, _, stored, _ in rows})
        # the status each row shows now is where its camera starts: the row may be new under an
        # id this worker has seen before, or rewritten since this worker last wrote it
        self.health.assume(np.array([r[0] for r in rows], np.int64), np.array([r[5] for r in rows], object),
                           time.monotonic())
        for camera_id, main, sub, sealed, _, _ in rows:
            public = sub or main  # the sub stream is enough for analysis and far cheaper
            if not public:
                self.failures[camera_id] = "no stream URL"
                continue
            malformed = malformed_stream_url(public)
            if malformed:  # stored before validation existed, or edited in the database
                self.failures[camera_id] = f"malformed stream URL: {malformed}"
                continue
            try:
                creds = self.cipher.open(sealed, camera_id) if sealed else None
            except Exception as exc:
                self.failures[camera_id] = str(exc)
                continue
            if creds is not None and (has_control_characters(creds.username)
                                      or has_control_characters(creds.password)):
                # stored before the API refused them: a CR LF in a username becomes a header
                # line of the Digest answer, so they are never sent
                self.failures[camera_id] = "stored credentials hold control characters: set them again"
                continue
            on_packet = None
            if self.settings.segment_dir is not None:
                writer = self.segments[camera_id] = SegmentWriter(
                    camera_id, self.settings.segment_dir, self.settings.segment_seconds)
                on_packet = lambda _id, packet, w=writer: w.write(packet)  # noqa: E731
            reader = self.reader_factory(
                camera_id, join_userinfo(public, creds), public_url=public, size=self.settings.size,
                interval=self.settings.interval, read_timeout=self.settings.read_timeout,
                open_timeout=self.settings.open_timeout, on_packet=on_packet, media_dirs=self.media.folders,
            )
            self.readers[camera_id] = reader
            self.errors_seen[camera_id] = 0
            reader.start()
        log.info("readers_started", extra={"cameras": len(rows), "failed": len(camera_ids & self.failures.keys())})

    @staticmethod
    def _rules_of(camera_id: int, stored: str | None) -> CameraRules | None:
        """The camera's own rules; the defaults (None) when it has none, or when what is stored no
        longer validates (edited in the database by hand) — detection goes on, and the log says why."""
        try:
            spec = stored_spec(stored)
        except ValueError as exc:
            log.warning("camera_rules_invalid", extra={"camera_id": camera_id, "error": str(exc)[:500]})
            return None
        return spec.to_rules() if spec is not None else None

    def release(self, camera_ids: set[int]) -> None:
        readers = [self.readers.pop(c) for c in camera_ids if c in self.readers]
        for reader in readers:
            reader.stop()
        for reader in readers:
            reader.join(timeout=self.settings.read_timeout + 5)
        for camera_id in camera_ids:  # after the reader thread is gone: nobody writes any more
            writer = self.segments.pop(camera_id, None)
            if writer is not None:
                writer.finish()
        self.figures.forget(camera_ids)
        for camera_id in camera_ids:
            self.failures.pop(camera_id, None)
            self.errors_seen.pop(camera_id, None)
        self.quality.forget(camera_ids)
        if self.detection is not None:
            self.detection.forget(camera_ids)
            self.detection.rules.update_rules(dict.fromkeys(camera_ids))

    def restart(self, camera_ids: set[int]) -> None:
        mine = {c for c in camera_ids if c in self.readers or c in self.failures}
        if mine:
            self.release(mine)
            self.assign(mine)

    def stop(self) -> None:
        self.release(set(self.readers) | set(self.failures))

    # -- every tick -------------------------------------------------------------------------
    def collect(self) -> FrameBatch:
        """The latest due frame of every camera that has a new one, as one batch."""
        return latest_batch(self.readers.values())

    def analyse(self, batch: FrameBatch) -> None:
        """The batch through the detection stages; their events onto the event stream."""
        if not len(batch):
            return
        report = self.quality.observe(batch)
        self.last_quality = report
        events = report.events
        if self.detection is not None:
            events = events + self.detection.run(batch, report)
        self.publish(events)

    def publish(self, events: list[Event]) -> None:
        if not events:
            return
        pipe = self.client.pipeline(transaction=False)
        for event in events:
            pipe.xadd(EVENTS_STREAM, event.fields(), maxlen=EVENTS_MAXLEN, approximate=True)
        pipe.execute()
        for event in events:
            log.info("event", extra={"camera_id": event.camera_id, "kind": event.kind, **event.evidence})

    def tick(self, now: float | None = None) -> FrameBatch:
        now = time.monotonic() if now is None else now
        batch = self.collect()
        self.analyse(batch)
        self.update_health(now)
        if now - self._retention_run >= RETENTION_SECONDS:
            if self.settings.segment_dir is not None:
                enforce_retention(self.settings.segment_dir, self.settings.segment_max_age,
                                  self.settings.segment_max_bytes)
            trim_malloc()  # freed decoder buffers back to the system: RSS stays flat over days
            self._retention_run = now
        if now - self._figures_published >= self.settings.figures_interval:
            self.figures.publish({c: r.stats for c, r in self.readers.items()})
            self._figures_published = now
        return batch

    def update_health(self, now: float) -> None:
        ids = np.array(sorted(self.readers.keys() | self.failures.keys()), dtype=np.int64)
        if not len(ids):
            return
        silence = np.full(len(ids), np.inf)  # a camera without a reader has never sent anything
        errors = np.zeros(len(ids), np.int64)
        heard = np.ones(len(ids), bool)
        for i, c in enumerate(ids.tolist()):  # one pass over the reader objects
            reader = self.readers.get(c)
            if reader is not None:
                silence[i] = reader.silent_for(now)
                heard[i] = reader.stats.last_packet_at is not None
                errors[i] = reader.stats.decode_errors - self.errors_seen[c]
                self.errors_seen[c] = reader.stats.decode_errors
        changed, old, new = self.health.observe(ids, silence, errors, now, heard)
        if len(changed):
            self._record(changed.tolist(), old.tolist(), new.tolist())
        if now - self._seen_refreshed > self.settings.status_refresh_seconds:
            self._seen_refreshed = now  # before the writes: a database error waits for the next round
            self._refresh_seen(ids[heard & (silence < self.health.rules.offline_after)].tolist())
            self._reassert()

    def _error_of(self, camera_id: int) -> str | None:
        if camera_id in self.failures:
            return self.failures[camera_id]
        reader = self.readers.get(camera_id)
        return None if reader is None else reader.stats.last_error

    def _write(self, ids: list[int], statuses: list[str]) -> list[dict[str, object]]:
        """Write these statuses (and the error behind each one that is not online); the rows."""
        stamp = utcnow()
        rows = []
        for camera_id, status in zip(ids, statuses):
            error = None if status == "online" else (self._error_of(camera_id) or "no video received")
            row: dict[str, object] = {"id": camera_id, "status": status, "last_error": error}
            if status == "online":
                row["last_seen_at"] = stamp
            rows.append(row)
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

    def _reassert(self) -> None:
        """Write again every settled status its registry row no longer shows (the row was
        rewritten, recreated under the same id, or an earlier write was lost); no events: the
        change itself was announced when it happened."""
        ids, statuses = self.health.known()
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
        self._write(ids[stale].tolist(), statuses[stale].tolist())
        log.warning("camera_status_reasserted", extra={
            "cameras": int(stale.sum()), "sample": ids[stale][:5].tolist(),
            "was": stored_status[rows[stale]][:5].tolist(), "now": statuses[stale][:5].tolist()})

    def _record(self, ids: list[int], old: list[str], new: list[str]) -> None:
        wall = time.time()
        rows = self._write(ids, new)
        events = []
        for row, before in zip(rows, old):
            kind = {"online": "camera_online", "offline": "camera_offline"}.get(row["status"])
            if kind is None or (kind == "camera_online" and before == "unknown"):
                continue  # first contact is not news; degraded waits for the quality events
            events.append(Event(row["id"], kind, wall, evidence={"previous": before, "error": row["last_error"]}))
        self.publish(events)
        for row, before in zip(rows, old):
            log.info("camera_status", extra={"camera_id": row["id"], "status": row["status"], "previous": before,
                                             "error": row["last_error"]})

    def _refresh_seen(self, ids: list[int]) -> None:
        if not ids:
            return
        with self.sessions() as session:
            session.execute(update(Camera).where(Camera.id.in_(ids)).values(last_seen_at=utcnow()))
            session.commit()
