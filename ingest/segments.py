"""The segment store: recent video of every camera, for clips, without re-encoding.

Each camera's packets are remuxed into rolling MPEG-TS files of about `segment_seconds`,
cut only at keyframes, under `<root>/<camera_id>/`. Every closed segment appends one line to
that folder's `index.jsonl`: start and end (Unix seconds), file, bytes and the offsets of its
keyframes — what a clip cutter needs to start at the right place. The index is a file per
camera, not a table, so 100,000 cameras do not put 10,000 writes a second on the database.
Memory per camera is bounded by the muxer's own buffer: packets are written as they come.
Timestamps come from the stream (anchored once per connection to the wall clock), so
consecutive segments of one connection meet exactly; a reconnect, or a looping file
starting over, starts a new segment.

Retention (`SegmentStore`, driven by `ingest.storage_guard`) deletes the oldest closed segments
across all cameras of the folder: by age and size cap once a minute, and by free space whenever
the disk is under its reserve. A write that fails (ENOSPC) costs that segment, never the
reader: the writer logs once, drops packets for a few seconds and tries again; `set_recording`
stops and resumes it when the guard says so.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import av

from config.private_files import append_private, private_dir, private_file, write_private

log = logging.getLogger("lookout.segments")
INDEX = "index.jsonl"
RETRY_SECONDS = 5.0  # after a failed write, no new segment is opened for this long


@dataclass
class _Open:
    container: av.container.OutputContainer
    stream: av.stream.Stream
    path: Path
    start_pts: float
    last_end_pts: float
    keyframes: list[float] = field(default_factory=list)


class SegmentWriter:
    """Rolling segments of one camera. `write` is called from that camera's reader thread."""

    def __init__(self, camera_id: int, root: Path, segment_seconds: float = 10.0) -> None:
        self.camera_id = camera_id
        self.folder = private_dir(root / str(camera_id))  # 0700: a camera's video is nobody else's
        self.segment_seconds = segment_seconds
        self._current: _Open | None = None
        self._source: object | None = None  # the input stream of the current connection
        self._anchor: tuple[float, float] | None = None  # (wall clock, pts) at its first packet
        self._pending: av.Packet | None = None
        self._last_dts: int | None = None  # last DTS written
        self._last_in_dts: int | None = None  # last DTS received
        self.failures = 0
        self.recording = True  # False: packets are dropped, no file is opened (the disk is full)
        self._failing = False  # a write failed and none has succeeded since: logged once
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._finished = False

    def write(self, packet: av.Packet) -> None:
        """Take one demuxed packet. Packets sharing a PTS are one access unit that RTP
        delivered in pieces (parameter sets apart from the IDR slice): they are joined first."""
        with self._lock:
            if self._finished or not self.recording:
                return
            try:
                self._write(packet)
            except (OSError, av.error.FFmpegError) as exc:  # ENOSPC and the like: the reader goes on
                self._failed(exc)
                self.close()  # what was written so far stays a segment
                self._retry_at = time.monotonic() + RETRY_SECONDS

    def set_recording(self, on: bool) -> None:
        """Stop (the open segment is closed and kept) or resume recording. Resuming starts a new
        timeline, anchored to the wall clock again at its first keyframe."""
        if on == self.recording:
            return
        with self._lock:
            self.recording = on
            if not on:
                self.close()
                self._source = None
        log.info("recording_resumed" if on else "recording_paused", extra={"camera_id": self.camera_id})

    def _failed(self, exc: BaseException) -> None:
        """Count a failed write; log the first of a run only (a full disk fails every packet)."""
        self.failures += 1
        if not self._failing:
            self._failing = True
            log.warning("segment_write_failed", extra={"camera_id": self.camera_id, "error": str(exc)})

    def finish(self) -> None:
        """Close for good. Safe from another thread than the reader's: a reader that outlived
        its join can neither race the muxer being closed nor open a new segment afterwards."""
        with self._lock:
            self._finished = True
            self.close()

    def _write(self, packet: av.Packet) -> None:
        if packet.pts is None or packet.stream is None or not packet.time_base:
            return
        restarted = packet.dts is not None and self._last_in_dts is not None and packet.dts < self._last_in_dts
        if packet.stream is not self._source or restarted:
            # a new connection, or a looping file starting over: a new timeline, a new segment
            self.close()
            self._source = packet.stream
            self._anchor = None
            self._last_dts = None
        if packet.dts is not None:
            self._last_in_dts = packet.dts
        pending = self._pending
        if pending is not None and pending.pts == packet.pts:
            joined = av.Packet(bytes(pending) + bytes(packet))
            joined.pts, joined.dts, joined.time_base = pending.pts, pending.dts, pending.time_base
            joined.duration = pending.duration
            joined.is_keyframe = pending.is_keyframe or packet.is_keyframe
            joined.stream = pending.stream
            self._pending = joined
            return
        self._flush_pending()
        self._pending = packet

    def _flush_pending(self, may_open: bool = True) -> None:
        """Write the held packet. `may_open=False` when closing: the packet's input stream
        may belong to a container the reader has already closed, so it may go into the open
        segment (whose output stream is ours) but must not be used to open a new one."""
        packet, self._pending = self._pending, None
        if packet is None or (not may_open and self._current is None):
            return
        # RTSP demuxing leaves DTS missing or behind; the muxer needs it strictly increasing
        dts = packet.dts if packet.dts is not None else packet.pts
        if self._last_dts is not None and dts <= self._last_dts:
            dts = packet.pts if packet.pts > self._last_dts else self._last_dts + 1
        packet.dts = self._last_dts = dts
        self._mux(packet, may_open)

    def _mux(self, packet: av.Packet, may_open: bool) -> None:
        pts = float(packet.pts * packet.time_base)
        duration = float((packet.duration or 0) * packet.time_base)
        if self._anchor is None:
            self._anchor = (time.time(), pts)
        current = self._current
        if current is None:
            if not packet.is_keyframe or time.monotonic() < self._retry_at:
                return  # a segment must start with a keyframe to be playable on its own
            current = self._current = self._open(packet, pts)
        elif may_open and packet.is_keyframe and pts - current.start_pts >= self.segment_seconds:
            self.close()
            current = self._current = self._open(packet, pts)
        if packet.is_keyframe:
            current.keyframes.append(round(pts - current.start_pts, 3))
        current.last_end_pts = max(current.last_end_pts, pts + duration)
        packet.stream = current.stream
        try:
            current.container.mux(packet)
        except av.error.FFmpegError as exc:
            if getattr(exc, "errno", None) == errno.ENOSPC:
                raise  # the file is lost: `write` gives it up and waits
            self._failed(exc)

    def _open(self, packet: av.Packet, pts: float) -> _Open:
        wall = self._wall(pts)
        path = private_file(self.folder / f"{int(wall * 1000)}.ts")  # 0600 before FFmpeg writes into it
        container = av.open(str(path), "w", format="mpegts")
        stream = container.add_stream_from_template(packet.stream)
        return _Open(container, stream, path, pts, pts)

    def _wall(self, pts: float) -> float:
        assert self._anchor is not None
        return self._anchor[0] + (pts - self._anchor[1])

    def close(self) -> None:
        """Finish the open segment, if any, and add it to the index. Never raises: it runs in
        the reader's thread and at release."""
        try:
            self._flush_pending(may_open=False)
        except (OSError, av.error.FFmpegError) as exc:
            self._failed(exc)
        current, self._current = self._current, None
        if current is None:
            return
        try:
            current.container.close()
        except av.error.FFmpegError as exc:  # the muxer's buffer could not be written (ENOSPC)
            self._failed(exc)
            self._retry_at = time.monotonic() + RETRY_SECONDS
        else:
            if self._failing:
                self._failing = False
                log.info("segment_write_recovered", extra={"camera_id": self.camera_id, "failures": self.failures})
        entry = {
            "camera_id": self.camera_id,
            "start": round(self._wall(current.start_pts), 3),
            "end": round(self._wall(current.last_end_pts), 3),
            "path": current.path.name,
            "bytes": current.path.stat().st_size if current.path.exists() else 0,
            "keyframes": current.keyframes,
        }
        try:
            with _index_lock(self.folder), append_private(self.folder / INDEX) as index:
                index.write(json.dumps(entry) + "\n")
        except OSError as exc:  # a full disk: the file stays, retention still finds it by name
            self._failed(exc)


@contextmanager
def _index_lock(folder: Path) -> Iterator[None]:
    """The folder's index, for one append or one compaction: a compaction (another worker's,
    maybe) must not drop a line appended between its read and its replace."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # and the lock with it


def read_index(folder: Path) -> list[dict[str, object]]:
    """The segments of one camera still on disk, oldest first (a line torn by a full disk is
    skipped)."""
    try:
        lines = (folder / INDEX).read_text().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return [e for e in entries if isinstance(e, dict) and (folder / str(e.get("path"))).exists()]


def _segment_files(folder: Path) -> list[tuple[int, Path]]:
    """(start in ms, path) of the camera folder's segments, oldest first; names are the start."""
    found = []
    for entry in os.scandir(folder):
        stem = entry.name[:-3]
        if entry.name.endswith(".ts") and stem.isdigit():
            found.append((int(stem), Path(entry.path)))
    return sorted(found)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _camera_folders(root: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def compact(folder: Path) -> None:
    """Rewrite the folder's index without the segments deleted since. Lazy (the index is read
    through `read_index`, which skips them): once a minute, not at every deletion."""
    with _index_lock(folder):
        kept = read_index(folder)
        tmp = folder / f"{INDEX}.{os.getpid()}.tmp"
        write_private(tmp, "".join(json.dumps(e) + "\n" for e in kept).encode())
        tmp.replace(folder / INDEX)


def enforce_retention(root: Path, max_age_seconds: float, max_bytes: int, now: float | None = None,
                      also_compact: set[Path] | None = None) -> int:
    """Delete segments older than `max_age_seconds`, then the oldest until the store holds at
    most `max_bytes`; compact the indexes (and those of `also_compact`). The number of files
    deleted."""
    now = time.time() if now is None else now
    files = []
    for camera in _camera_folders(root):
        for start_ms, path in _segment_files(camera):
            try:
                files.append((start_ms / 1000, path.stat().st_size, path))
            except FileNotFoundError:
                continue
    files.sort()
    total = sum(size for _, size, _ in files)
    deleted = 0
    touched = set(also_compact or ())
    for start, size, path in files:
        if start >= now - max_age_seconds and total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
        deleted += 1
        touched.add(path.parent)
    for folder in touched:
        try:
            compact(folder)
        except FileNotFoundError:
            continue
        except OSError as exc:  # a full disk: the stale lines are harmless, try again next time
            log.warning("segment_index_compaction_failed", extra={"folder": str(folder), "error": str(exc)})
    if deleted:
        log.info("segments_retired", extra={"deleted": deleted, "bytes_left": total})
    return deleted


class SegmentStore:
    """The closed segments under `root`, oldest first across all cameras, for deletion by free
    space. One scan (names, and one stat per camera) is consumed from its oldest end pass after
    pass: what is written after it is newer than all of it. The newest file of a camera written
    to within `open_grace` seconds may still be open (unlinking it would free nothing until the
    writer closes it): it is left out, and a file not older than the oldest one left out is only
    deleted after a fresh scan, so that 'oldest first' holds at the seam too."""

    def __init__(self, root: Path, open_grace: float = 60.0) -> None:
        self.root = root
        self.open_grace = open_grace
        self._queue: deque[tuple[int, Path]] = deque()
        self._horizon = 2**62  # start (ms) of the oldest file the last scan left out as maybe open
        self.dirty: set[Path] = set()  # folders whose index still names deleted segments
        self.exhausted = False  # the last pass ran out of closed segments before freeing enough

    def scan(self) -> None:
        files: list[tuple[int, Path]] = []
        horizon = 2**62
        recent = time.time() - self.open_grace
        for folder in _camera_folders(self.root):
            found = _segment_files(folder)
            if found and _modified(found[-1][1]) >= recent:  # a camera still recording
                horizon = min(horizon, found.pop()[0])
            files += found
        files.sort()
        self._queue, self._horizon = deque(files), horizon

    def retire(self, need_bytes: int) -> tuple[int, int]:
        """Delete the oldest closed segments until `need_bytes` (allocated blocks) are freed;
        (files, bytes). Sets `exhausted` when there was not enough."""
        deleted = freed = 0
        rescanned = False
        while freed < need_bytes:
            if not self._queue or self._queue[0][0] >= self._horizon:
                if rescanned:
                    break
                self.scan()
                rescanned = True
                continue
            _, path = self._queue.popleft()
            try:
                blocks = path.stat().st_blocks
                path.unlink()
            except FileNotFoundError:  # age retention, or a camera deleted, got there first
                continue
            except OSError as exc:  # not ours to delete (a file put there by hand): the next one
                log.warning("segment_not_deleted", extra={"path": str(path), "error": str(exc)})
                continue
            freed += blocks * 512
            deleted += 1
            self.dirty.add(path.parent)
        self.exhausted = freed < need_bytes
        return deleted, freed

    def enforce(self, max_age_seconds: float, max_bytes: int) -> int:
        """The once-a-minute pass: age and size cap, the lazy index compaction, a fresh scan."""
        dirty, self.dirty = self.dirty, set()
        deleted = enforce_retention(self.root, max_age_seconds, max_bytes, also_compact=dirty)
        self.scan()
        return deleted
