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
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import av

from config.private_files import append_private, private_dir, private_file, write_private

log = logging.getLogger("lookout.segments")
INDEX = "index.jsonl"


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
        self._lock = threading.Lock()
        self._finished = False

    def write(self, packet: av.Packet) -> None:
        """Take one demuxed packet. Packets sharing a PTS are one access unit that RTP
        delivered in pieces (parameter sets apart from the IDR slice): they are joined first."""
        with self._lock:
            if not self._finished:
                self._write(packet)

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
            if not packet.is_keyframe:
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
            self.failures += 1
            log.warning("segment_write_failed", extra={"camera_id": self.camera_id, "error": str(exc)})

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
        """Finish the open segment, if any, and add it to the index."""
        self._flush_pending(may_open=False)
        current, self._current = self._current, None
        if current is None:
            return
        try:
            current.container.close()
        except av.error.FFmpegError as exc:
            log.warning("segment_close_failed", extra={"camera_id": self.camera_id, "error": str(exc)})
        entry = {
            "camera_id": self.camera_id,
            "start": round(self._wall(current.start_pts), 3),
            "end": round(self._wall(current.last_end_pts), 3),
            "path": current.path.name,
            "bytes": current.path.stat().st_size if current.path.exists() else 0,
            "keyframes": current.keyframes,
        }
        with append_private(self.folder / INDEX) as index:
            index.write(json.dumps(entry) + "\n")


def read_index(folder: Path) -> list[dict[str, object]]:
    """The segments of one camera still on disk, oldest first."""
    try:
        lines = (folder / INDEX).read_text().splitlines()
    except FileNotFoundError:
        return []
    entries = [json.loads(line) for line in lines if line.strip()]
    return [e for e in entries if (folder / str(e["path"])).exists()]


def enforce_retention(root: Path, max_age_seconds: float, max_bytes: int, now: float | None = None) -> int:
    """Delete segments older than `max_age_seconds`, then the oldest until the store holds at
    most `max_bytes`; compact the indexes. The number of files deleted."""
    now = time.time() if now is None else now
    files = []
    for camera in root.iterdir() if root.exists() else ():
        if camera.is_dir():
            for entry in os.scandir(camera):
                if entry.name.endswith(".ts"):
                    files.append((int(entry.name[:-3]) / 1000, entry.stat().st_size, Path(entry.path)))
    files.sort()
    total = sum(size for _, size, _ in files)
    deleted = 0
    touched = set()
    for start, size, path in files:
        if start >= now - max_age_seconds and total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
        deleted += 1
        touched.add(path.parent)
    for folder in touched:
        kept = read_index(folder)
        tmp = folder / (INDEX + ".tmp")
        write_private(tmp, "".join(json.dumps(e) + "\n" for e in kept).encode())
        tmp.replace(folder / INDEX)
    if deleted:
        log.info("segments_retired", extra={"deleted": deleted, "bytes_left": total})
    return deleted
