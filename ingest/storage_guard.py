"""The worker's guard over the disk its video shares with the alerts' storage.

Once per tick (a statvfs: microseconds) the guard of `CameraRunner` measures the segment
folder's filesystem (and the data folder's, when it is another one), and:

- **keeps the reserve** (`config.disk_space`): whenever free space is under the reserve plus
  what the disk is expected to lose before the next checks (its fill rate, measured between
  ticks, times a horizon of a few tick intervals), the oldest closed segments of every camera
  of the folder go (`SegmentStore.retire`), until there is that headroom twice over. Only video
  is ever deleted. A slow tick widens the horizon, so the store cannot overrun between passes.
- **stops recording** when free space is under the stop line even so (something other than
  video fills the disk): the segment writers drop packets, readers and detection go on. It
  resumes half way back up to the reserve, so that it does not flap at the line.
- **raises one operational alert**: a `disk_pressure` event (camera `SYSTEM_CAMERA_ID`) when
  the reserve cannot be kept with all video gone, or recording stops; a second one only if
  recording stops later in the same episode; one `disk_recovered` once that condition has been
  false for `RECOVER_SECONDS` (and `RECOVER_CHECKS` checks) in a row. Not a free-space line above
  the reserve: the guard itself keeps free space only just over the reserve while video refills
  the disk, so such a line could stay out of reach for good and the alert escalate forever.
  Both events name the disk by the same `host` and absolute `path` (the alert engine pairs them).

Several workers of one machine share the segment folder: only the one holding the folder's
lock (`.guard.lock`, flock: released by the kernel when it dies) deletes and raises the alert;
every worker measures for itself whether to record, so a worker never writes into a full disk
waiting for another. The open episode lives in the lock file too, so that a leader taking over
from one that died (or restarted) still closes it: a record of `RECORD_BYTES` allocated when the
lock is taken, rewritten in place when an episode starts or ends, so that writing it needs no
free block on a full disk. (Assuming pressure at every takeover would also close it, at the cost
of a `disk_recovered` with no alert at every worker start.)
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from config.disk_space import MB, DiskLimits, DiskStatus, filesystems, measure
from config.private_files import open_private, private_dir
from detectors.events import SYSTEM_CAMERA_ID, Event
from ingest.segments import SegmentStore

log = logging.getLogger("lookout.storage")
LOCK = ".guard.lock"
MIN_HORIZON = 3.0  # seconds of filling the headroom must cover, at least
MAX_HORIZON = 120.0
RECOVER_SECONDS = 30.0  # the pressure condition must stay false this long before disk_recovered
RECOVER_CHECKS = 3  # ... and over at least this many checks (a stalled tick is not a spell)
RECORD_BYTES = 4096  # the episode record in the lock file: one block, rewritten in place


@dataclass
class _Disk:
    """One watched filesystem and its alert state."""

    path: Path  # absolute: the `path` of its events, the same from every worker
    has_video: bool
    pressure: bool = False
    announced_stop: bool = False  # this episode's alert already said recording stopped
    clear_since: float | None = None  # (monotonic) since when the pressure condition is false
    clear_checks: int = 0
    unmeasured: bool = False  # its last measure failed: said once per spell


class StorageGuard:
    def __init__(self, segment_dir: Path, limits: DiskLimits, max_age_seconds: float, max_bytes: int,
                 data_dir: Path | None = None, worker_id: str = "", open_grace: float = 60.0,
                 recover_seconds: float = RECOVER_SECONDS) -> None:
        self.segment_dir = segment_dir
        self.limits = limits
        self.max_age_seconds = max_age_seconds
        self.max_bytes = max_bytes
        self.recover_seconds = recover_seconds
        self.worker_id = worker_id
        self.host = socket.gethostname()
        self.store = SegmentStore(segment_dir, open_grace)
        paths = [segment_dir] + ([data_dir] if data_dir is not None else [])
        self.disks = [_Disk(Path(os.path.abspath(p)), p == segment_dir) for p in filesystems(paths).values()]
        self.recording = True
        self.rate = 0.0  # bytes per second the video's disk fills at (smoothed)
        self.last: DiskStatus | None = None  # the video disk after the latest check
        self._checked: tuple[float, int] | None = None  # (monotonic, free bytes) after the last check
        self._lock_fd: int | None = None
        self._record_failed = False

    # -- leadership ------------------------------------------------------------------------
    def leads(self) -> bool:
        """Whether this worker is the one that deletes and alerts (tried again every check)."""
        if self._lock_fd is not None:
            return True
        try:
            fd = open_private(private_dir(self.segment_dir) / LOCK, os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        self._load_episode()
        log.info("storage_guard_leads", extra={"worker_id": self.worker_id, "path": str(self.segment_dir),
                                               "pressure": [str(d.path) for d in self.disks if d.pressure]})
        return True

    def _load_episode(self) -> None:
        """Take over the episode a previous leader left open (it may have died in it), and
        allocate the record's block while there is room."""
        if self._lock_fd is None:
            return
        try:
            record = json.loads(os.pread(self._lock_fd, 16 * RECORD_BYTES, 0).strip(b"\0 \n") or b"{}")
            episodes = record.get("pressure", {}) if isinstance(record, dict) else {}
        except (OSError, ValueError) as exc:  # torn by a crash: as if no episode were open
            log.warning("storage_guard_record_unreadable", extra={"path": str(self.segment_dir), "error": str(exc)})
            episodes = {}
        for disk in self.disks:  # the record, not this worker's memory of an earlier lead, is the truth
            state = episodes.get(str(disk.path)) if isinstance(episodes, dict) else None
            if isinstance(state, dict):
                disk.pressure, disk.announced_stop = True, bool(state.get("stopped"))
            else:
                disk.pressure = disk.announced_stop = False
            disk.clear_since, disk.clear_checks = None, 0
        self._save_episode()

    def _save_episode(self) -> None:
        """Write the open episodes into the lock file, in place (padded to `RECORD_BYTES`), before
        the event that opens or closes one is published: a leader dying after it leaves a successor
        at worst a `disk_recovered` for an alert that never opened, which the engine ignores."""
        if self._lock_fd is None:
            return
        episodes = {str(d.path): {"stopped": d.announced_stop} for d in self.disks if d.pressure}
        payload = json.dumps({"pressure": episodes}).encode().ljust(RECORD_BYTES, b" ")
        try:
            os.pwrite(self._lock_fd, payload, 0)
            if os.fstat(self._lock_fd).st_size > len(payload):
                os.ftruncate(self._lock_fd, len(payload))
            os.fdatasync(self._lock_fd)
        except OSError as exc:  # a successor would not know of this episode: say so, once
            if not self._record_failed:
                log.warning("storage_guard_record_failed", extra={"path": str(self.segment_dir), "error": str(exc)})
            self._record_failed = True
        else:
            self._record_failed = False

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- every tick --------------------------------------------------------------------------
    def check(self, now: float | None = None) -> list[Event]:
        """Measure, delete what the reserve needs, decide recording; the events to publish."""
        now = time.monotonic() if now is None else now
        leads = self.leads()
        events: list[Event] = []
        for disk in self.disks:
            try:
                status = measure(disk.path, self.limits)
            except OSError as exc:  # a dead mount, an unreadable folder: said once a spell, tried every tick
                if not disk.unmeasured:
                    log.warning("disk_unmeasurable", extra={"path": str(disk.path), "error": str(exc)})
                disk.unmeasured = True
                continue
            if disk.unmeasured:
                disk.unmeasured = False
                log.info("disk_measurable", extra={"path": str(disk.path)})
            if disk.has_video:
                status = self._keep_reserve(status, now, leads)
                self._decide_recording(status)
                self.last = status
            if leads:
                events += self._alert(disk, status, now)
        return events

    def enforce(self) -> int:
        """The once-a-minute pass (age, size cap, index compaction), by the leading worker only."""
        return self.store.enforce(self.max_age_seconds, self.max_bytes) if self.leads() else 0

    def _keep_reserve(self, status: DiskStatus, now: float, leads: bool) -> DiskStatus:
        freed = 0
        if self._checked is not None and now > self._checked[0]:
            elapsed = now - self._checked[0]
            filled = max(0.0, (self._checked[1] - status.free_bytes) / elapsed)
            self.rate = 0.7 * self.rate + 0.3 * filled
            horizon = min(MAX_HORIZON, max(MIN_HORIZON, 3 * elapsed))
        else:
            horizon = MIN_HORIZON
        # at most half the gap between the lines: a one-off burst (a ballast, a database
        # vacuum) must not make the guard delete far more video than the lines ask for
        headroom = min(int(self.rate * horizon), (status.reserve_bytes - status.stop_bytes) // 2)
        if leads and status.free_bytes < status.reserve_bytes + headroom:
            need = status.reserve_bytes + 2 * headroom - status.free_bytes
            deleted, freed = self.store.retire(need)
            if deleted:
                status = measure(Path(status.path), self.limits)
                log.debug("segments_retired_for_space", extra={
                    "deleted": deleted, "freed_mb": freed // MB, "free_mb": status.free_bytes // MB,
                    "rate_mb_s": round(self.rate / MB, 2), "horizon_s": horizon})
        self._checked = (now, status.free_bytes)
        return status

    def _decide_recording(self, status: DiskStatus) -> None:
        if self.recording and status.free_bytes < status.stop_bytes:
            self.recording = False
            log.warning("recording_stopped", extra={"worker_id": self.worker_id, **status.evidence(),
                                                    "stop_bytes": status.stop_bytes})
        elif not self.recording and status.free_bytes >= (status.stop_bytes + status.reserve_bytes) // 2:
            self.recording = True
            log.info("recording_resumed", extra={"worker_id": self.worker_id, **status.evidence()})

    def _alert(self, disk: _Disk, status: DiskStatus, now: float) -> list[Event]:
        recording_on = self.recording or not disk.has_video
        # video alone is no pressure: only what deleting all of it cannot make room for
        pressed = not recording_on or (status.verdict != "ok" and (not disk.has_video or self.store.exhausted))
        if pressed:
            disk.clear_since, disk.clear_checks = None, 0
            if not disk.pressure:
                disk.pressure, disk.announced_stop = True, not recording_on
            elif not recording_on and not disk.announced_stop:  # the episode got worse: say so once
                disk.announced_stop = True
            else:
                return []
            self._save_episode()
            return [self._event("disk_pressure", status, recording_on)]
        if not disk.pressure:
            return []
        if disk.clear_since is None:
            disk.clear_since = now
        disk.clear_checks += 1
        if disk.clear_checks < RECOVER_CHECKS or now - disk.clear_since < self.recover_seconds:
            return []
        disk.pressure = disk.announced_stop = False
        disk.clear_since, disk.clear_checks = None, 0
        self._save_episode()
        return [self._event("disk_recovered", status, True)]

    def _event(self, kind: str, status: DiskStatus, recording_on: bool) -> Event:
        evidence = {"host": self.host, "worker_id": self.worker_id, **status.evidence(),
                    "recording": "on" if recording_on else "stopped"}
        (log.warning if kind == "disk_pressure" else log.info)(kind, extra=evidence)
        return Event(SYSTEM_CAMERA_ID, kind, time.time(), evidence=evidence)
