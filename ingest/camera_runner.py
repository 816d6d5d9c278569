"""The readers of one worker's leased cameras, and what comes out of them every tick.

`assign` / `release` are the worker's lease hooks; each reader also feeds its camera's
segment writer (`ingest.segments`), whose disk `ingest.storage_guard` watches every tick. Each `tick`
hands the latest due frame of every camera to the detectors as ONE `FrameBatch` (video quality
and motion, then the detection stage of `ingest.detection`), turns what the readers saw into statuses
(`detectors.camera_health`, all cameras at once), keeps `camera_offline` / `camera_online`
events in the worker's durable outbox (`ingest.outbox`), writes the changes to the registry and
sends the events on to `lookout:events`. Every event (detections too) waits in that outbox until
Redis has taken it, and a status the database refused is written again by the next ticks, so
neither a Redis nor a database outage loses what a camera did meanwhile.

The registry row is the status people see, so it must follow what the readers see even when the
row changes behind the worker's back: a camera (re)assigned starts from the status its row
shows (`HealthTracker.assume`), and every `status_refresh_seconds` the statuses the worker has
settled are compared with the rows and written again where they differ.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import redis
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.database import DATABASE_DOWN, utcnow
from config.disk_space import DiskLimits
from config.processes import trim_malloc
from detectors.camera_health import HealthRules, HealthTracker
from detectors.events import Event
from detectors.frames import FrameBatch
from detectors.rules import CameraRules
from detectors.video_quality import QualityMonitor, QualityReport
from ingest.camera_statuses import CameraStatuses
from ingest.detection import DetectionStage
from ingest.media_paths import MediaFolders, media_dirs_of
from ingest.outbox import DEFAULT_MAX_EVENTS, Outbox
from ingest.segments import SegmentWriter
from ingest.storage_guard import StorageGuard
from ingest.stream_figures import FigurePublisher
from ingest.stream_reader import StreamReader, latest_batch
from registry.cameras import Camera
from registry.credentials import CredentialCipher, join_userinfo
from registry.fields import StreamUrl, has_control_characters
from registry.rules_spec import stored_spec
from registry.suppressions import add_hits, for_cameras

if TYPE_CHECKING:
    from config.settings import Settings

log = logging.getLogger("lookout.runner")
SEEN_REFRESH_SECONDS = 15.0
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
    """What the runner works with: the `worker:` section of the settings (`config.worker`) with
    the deployment's folders resolved (`from_settings`), or a test's own small values."""

    size: tuple[int, int] = (640, 360)
    interval: float = 2.0
    read_timeout: float = 5.0
    open_timeout: float = 5.0
    segment_dir: Path | None = None  # None: keep no video
    segment_seconds: float = 10.0
    segment_max_age: float = 72 * 3600.0
    segment_max_bytes: int = 50 * 2**30
    # the disk under the video (`ingest.storage_guard`): video goes to keep the reserve free,
    # recording stops under the stop line so that the alerts' storage keeps room
    disk_limits: DiskLimits = field(default_factory=DiskLimits)
    data_dir: Path | None = None  # watched too when on another disk than the video
    figures_interval: float = 5.0  # seconds between publications of the stream figures
    # where `file:` streams may read from (`ingest.media_paths`); none: `file:` streams are refused
    media_dirs: tuple[Path, ...] = ()
    status_refresh_seconds: float = SEEN_REFRESH_SECONDS  # last_seen_at, and statuses re-asserted
    # the durable event outbox's folder (`ingest.outbox`); None: in memory, lost with the process
    outbox_dir: Path | None = None
    outbox_max_events: int = DEFAULT_MAX_EVENTS

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamSettings:
        """A worker process's: its `worker:` section, the video, outbox and media folders under
        the deployment's `data_dir` unless configured elsewhere."""
        worker, data_dir = settings.worker, settings.data_dir
        return cls(
            size=(worker.analysis_width, worker.analysis_height), interval=worker.analysis_interval_seconds,
            read_timeout=worker.stream_read_timeout_seconds, open_timeout=worker.stream_read_timeout_seconds,
            segment_dir=worker.segment_folder(data_dir), segment_seconds=worker.segment_seconds,
            segment_max_age=worker.segment_max_age_hours * 3600, segment_max_bytes=int(worker.segment_max_gb * 2**30),
            disk_limits=DiskLimits.from_settings(worker), data_dir=data_dir,
            figures_interval=worker.stream_figures_seconds, media_dirs=media_dirs_of(settings),
            outbox_dir=data_dir / "outbox", outbox_max_events=worker.outbox_max_events)


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
        self.failures: dict[int, str] = {}  # cameras that cannot even start a reader
        self.quality = QualityMonitor()
        self.detection = detection
        self.last_quality: QualityReport | None = None
        self._seen_refreshed = 0.0
        self.figures = FigurePublisher(client, worker_id)
        self._figures_published = 0.0
        self.segments: dict[int, SegmentWriter] = {}
        self._retention_run = 0.0
        self.storage = None if settings.segment_dir is None else StorageGuard(
            settings.segment_dir, settings.disk_limits, settings.segment_max_age, settings.segment_max_bytes,
            settings.data_dir, worker_id, open_grace=max(30.0, 3 * settings.segment_seconds))
        self.media = MediaFolders(settings.media_dirs)
        self._storage_failing = False
        self.outbox = Outbox(settings.outbox_dir, settings.outbox_max_events)  # in memory on a full disk
        self.statuses = CameraStatuses(sessions, self._error_of)
        self._hits: dict[int, int] = {}  # candidates each suppression stopped, not yet in the registry
        self._hits_written = 0.0

    # -- lease hooks ----------------------------------------------------------------------
    def hooks(self) -> dict[str, Callable[..., object]]:
        """How an `ingest.worker.IngestWorker` drives this runner: one wiring for the worker
        process and the tests."""
        return {"on_assign": self.assign, "on_release": self.release, "on_change": self.restart,
                "on_taught": self.reload_suppressions, "tick": self.tick}

    def assign(self, camera_ids: set[int]) -> None:
        with self.sessions() as session:
            rows = session.execute(
                select(Camera.id, Camera.main_stream_url, Camera.sub_stream_url, Camera.credentials_sealed,
                       Camera.detection_rules, Camera.status)
                .where(Camera.id.in_(list(camera_ids)))
            ).all()
            # what operators taught these cameras (registry.suppressions), loaded with their rules
            taught = for_cameras(session, [r[0] for r in rows]) if self.detection is not None else {}
        if self.detection is not None:
            self.detection.rules.update_rules({camera_id: self._rules_of(camera_id, stored)
                                               for camera_id, _, _, _, stored, _ in rows})
            self.detection.suppressions.replace(taught)
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
                writer.set_recording(self.storage is None or self.storage.recording)  # not into a full disk
                on_packet = lambda _id, packet, w=writer: w.write(packet)
            reader = self.reader_factory(
                camera_id, join_userinfo(public, creds), public_url=public, size=self.settings.size,
                interval=self.settings.interval, read_timeout=self.settings.read_timeout,
                open_timeout=self.settings.open_timeout, on_packet=on_packet, media_dirs=self.media.folders,
            )
            self.readers[camera_id] = reader
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
        try:
            self.figures.forget(camera_ids)
        except redis.RedisError:
            pass  # figures are a live view: their own age tells readers they are stale
        self.statuses.settle(camera_ids)
        for camera_id in camera_ids:
            self.failures.pop(camera_id, None)
        self.quality.forget(camera_ids)
        if self.detection is not None:
            self.detection.forget(camera_ids)
            self.detection.rules.update_rules(dict.fromkeys(camera_ids))
            self.detection.suppressions.replace({camera_id: [] for camera_id in camera_ids})

    def reload_suppressions(self, camera_ids: set[int]) -> None:
        """What operators taught these cameras, read again (a false alarm marked, a suppression
        deleted): the readers, the recording and the detection state go on untouched."""
        mine = [c for c in sorted(camera_ids) if c in self.readers]
        if self.detection is None or not mine:
            return
        try:
            with self.sessions() as session:
                taught = for_cameras(session, mine)
        except DATABASE_DOWN as exc:  # the next notice or reassignment loads them
            log.warning("suppressions_not_reloaded", extra={"cameras": len(mine), "error": str(exc)[:300]})
            return
        self.detection.suppressions.replace(taught)
        log.info("suppressions_reloaded", extra={"cameras": len(mine),
                                                 "suppressions": sum(len(v) for v in taught.values())})

    def restart(self, camera_ids: set[int]) -> None:
        mine = {c for c in camera_ids if c in self.readers or c in self.failures}
        if mine:
            self.release(mine)
            self.assign(mine)

    def stop(self) -> None:
        """Release every camera; one last try to send the outbox, then its file is let go (left
        for the next worker on this folder when Redis did not take everything)."""
        self.release(set(self.readers) | set(self.failures))
        if self.detection is not None:
            self.detection.close()
        self._write_hits()
        self.outbox.flush(self.client)
        self.outbox.close()

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
        """Into the durable outbox, then on to `lookout:events` if Redis takes them now; when it
        does not, the outbox keeps them and every tick tries again."""
        self._keep(events)
        self.outbox.flush(self.client)

    def _keep(self, events: list[Event]) -> None:
        if not events:
            return
        self.outbox.put(events)
        for event in events:
            log.info("event", extra={"camera_id": event.camera_id, "kind": event.kind, "event_id": event.event_id,
                                     **event.evidence})

    def tick(self, now: float | None = None) -> FrameBatch:
        """One pass. The disk check comes FIRST, in its own try: it is what deletes video on a
        filling disk, so nothing else a tick does (and may fail at) can keep it from running."""
        now = time.monotonic() if now is None else now
        self._check_storage(now)
        batch = self.collect()
        self.analyse(batch)
        self.update_health(now)
        self.outbox.flush(self.client)  # what an outage kept back; never raises (it backs off)
        if now - self._retention_run >= RETENTION_SECONDS:
            if self.storage is not None:
                self.storage.enforce()  # age and size cap, by the worker leading the folder
            trim_malloc()  # freed decoder buffers back to the system: RSS stays flat over days
            self._retention_run = now
        if now - self._hits_written >= self.settings.figures_interval:
            self._hits_written = now
            self._write_hits()
        if now - self._figures_published >= self.settings.figures_interval:
            self._figures_published = now
            try:
                self.figures.publish({c: r.stats for c, r in self.readers.items()})
            except redis.RedisError:
                pass  # a live view, replaced by the next publication; the outbox logs the outage
        return batch

    def _write_hits(self) -> None:
        """Add to the registry how many candidates each suppression stopped (the KPI of what
        operators taught); what the database refuses now waits for the next try."""
        if self.detection is None:
            return
        for sid, count in self.detection.suppressions.take_hits().items():
            self._hits[sid] = self._hits.get(sid, 0) + count
        if not self._hits:
            return
        try:
            with self.sessions() as session:
                add_hits(session, self._hits, utcnow())
                session.commit()
        except DATABASE_DOWN as exc:
            log.warning("suppression_hits_not_written", extra={"suppressions": len(self._hits), "error": str(exc)[:300]})
            return
        self._hits = {}

    def _check_storage(self, now: float) -> None:
        """Every tick: a statvfs, video deleted whenever under the reserve, recording on or off;
        `disk_pressure` / `disk_recovered` (once each per episode) into the outbox. A failure is
        logged once per episode and tried again next tick."""
        if self.storage is None:
            return
        try:
            alerts = self.storage.check(now)
        except Exception as exc:  # a bug or an unforeseen error: the rest of the tick goes on
            if not self._storage_failing:
                log.exception("storage_check_failed", extra={  # a bug's traceback, once
                    "path": str(self.settings.segment_dir), "error": f"{type(exc).__name__}: {exc}"[:300]})
            self._storage_failing = True
            return
        if self._storage_failing:
            log.info("storage_check_recovered", extra={"path": str(self.settings.segment_dir)})
            self._storage_failing = False
        for writer in self.segments.values():
            writer.set_recording(self.storage.recording)
        if alerts:
            self.publish(alerts)

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
                errors[i] = reader.stats.recent_decode_errors  # damaged frames in the reader's last minute
        changed, old, new = self.health.observe(ids, silence, errors, now, heard)
        if len(changed):
            self._record(changed.tolist(), old.tolist(), new.tolist(), now)
        self.statuses.write_pending(now)
        if now - self._seen_refreshed > self.settings.status_refresh_seconds:
            self._seen_refreshed = now  # before the writes: a database error waits for the next round
            try:
                self.statuses.refresh_seen(ids[heard & (silence < self.health.rules.offline_after)].tolist())
                self.statuses.reassert(*self.health.known())
            except DATABASE_DOWN as exc:
                log.warning("camera_status_refresh_failed", extra={"cameras": len(ids), "error": str(exc)[:300]})

    def _error_of(self, camera_id: int) -> str | None:
        if camera_id in self.failures:
            return self.failures[camera_id]
        reader = self.readers.get(camera_id)
        return None if reader is None else reader.stats.last_error

    def _record(self, ids: list[int], old: list[str], new: list[str], now: float) -> None:
        """The tracker has moved on: the events go into the outbox FIRST (durable, whatever the
        database does), then the rows; a write the database refuses stays pending, retried by
        every tick with backoff (`ingest.camera_statuses`), and the events leave once Redis takes them."""
        wall = time.time()
        rows = self.statuses.rows(ids, new)
        events = []
        for row, before in zip(rows, old):
            kind = {"online": "camera_online", "offline": "camera_offline"}.get(row["status"])
            if kind is None or (kind == "camera_online" and before == "unknown"):
                continue  # first contact is not news; degraded waits for the quality events
            events.append(Event(row["id"], kind, wall, evidence={"previous": before, "error": row["last_error"]}))
        self._keep(events)
        self.statuses.queue(ids, new, now)
        self.outbox.flush(self.client)  # after the rows, when the database took them: the row comes first
        for row, before in zip(rows, old):
            log.info("camera_status", extra={"camera_id": row["id"], "status": row["status"], "previous": before,
                                             "error": row["last_error"]})
