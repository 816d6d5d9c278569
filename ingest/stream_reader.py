"""One camera's stream, read by a PyAV thread: always demux, decode only what is analysed.

- Every packet is read (it keeps the RTSP session alive) and handed to `on_packet`, which is
  how the segment store gets the video.
- A frame is decoded only when the camera is due for analysis. While the analysis interval
  is at least the stream's keyframe interval, only keyframes reach the decoder
  (`skip_frame = NONKEY`, about 0.05× the cost of decoding everything); otherwise every packet
  is decoded, since P-frames need their references, and only the due frame is converted.
  Scaling to the analysis size happens inside PyAV (libswscale), in the same call.
- The end of a stream is a disconnect. PyAV does not raise when an RTSP server dies: demux
  just ends with an empty packet. `file:` sources instead loop, paced at their own frame
  rate, so that a clip behaves like a camera.
- Reconnects back off exponentially with jitter, capped at `max_backoff` (default 4 s) so
  that a camera that comes back streams again within 10 s.
- Each scheme opens only its own FFmpeg protocols (`protocol_whitelist`): whatever a server
  answers (a redirect, a playlist, an SDP), the reader speaks no protocol its URL did not name. A
  `file:` source is opened as `file:<real path>` with the file protocol alone and the demuxers
  of video files alone (no concat scripts, playlists or image sequences that name other files),
  after `ingest.media_paths` has checked, at every open, that it lies inside the media folders.
- Broken video is counted, not just concealed. FFmpeg's H.264 decoder conceals damaged
  macroblocks and only flags the picture (`frame.is_corrupt`; error resilience needs the single
  decoding thread set below); its HEVC decoder drops what it cannot decode and, asked to output
  pictures whose references were lost, flags those. A flagged picture or a rejected packet is
  a damaged frame: `decode_errors` counts them, `last_error` says how many in the last
  `damage_window` seconds. With keyframe-only decoding the decoded keyframes are the sample.
  Flagged pictures before the first clean one or keyframe after a (re)start are a late join's
  missing references, not bit errors. FFmpeg's log lines are not used: its log callback is
  process-wide and does not say which camera's decoder wrote them.
- A picture of another size (the camera was reconfigured) becomes the reported size; the
  analysed frame is scaled to the configured size all the same.
- Every time the per-packet path reads (arrival, due, damage window, the analysed frame's
  stamp, silence) comes from `clock`: the real clock in the worker; a simulated one in
  `lookout eval video` (`ingest.video_eval`), which feeds a reader that is never started as a
  thread the packets of a clip (`prepare`, `feed`, `rewound`) on a clock that follows their
  timestamps, so that an hour of video plays through the worker's own code in minutes. The
  thread's own pacing and reconnect backoff stay on the real clock: a started reader is live.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import av
import numpy as np

from detectors.frames import FrameBatch
from ingest.media_paths import MediaFolders, MediaRefused
from ingest.stream_stats import StreamStats
from registry.fields import file_url_path

log = logging.getLogger("lookout.stream")


class Clock(Protocol):
    """Where a reader reads the time: `monotonic()` for its own timing, `time()` (Unix
    seconds) for the stamp of an analysed frame. The `time` module is one."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class StreamEnded(Exception):
    """The source stopped sending: a disconnect for a camera."""


class UnsupportedStream(Exception):
    """The source sends video Lookout does not handle; retried all the same (slowly), since
    a technician may reconfigure the camera."""


#: How `last_error` names a decoder's format.
CODEC_LABELS = {"h264": "H.264", "hevc": "H.265"}
#: Seconds of damaged frames that `last_error` counts; damaged frames remembered for that count.
DAMAGE_WINDOW = 60.0
DAMAGE_MEMORY = 4096

#: What the cameras of these networks send (GB/T 28181 requires H.264 or H.265), and what the
#: MPEG-TS segment store can hold without re-encoding.
SUPPORTED_CODECS = frozenset({"h264", "hevc"})


#: The FFmpeg protocols each scheme may use (FFmpeg's own names: the RTSP demuxer opens `tcp`,
#: `udp` and `rtp` itself, `tls` under rtsps/https/rtmps; HTTP may redirect between http and https).
PROTOCOLS = {
    "rtsp": "rtsp,rtp,udp,tcp",
    "rtsps": "rtsp,rtsps,rtp,srtp,udp,tcp,tls",
    "http": "http,https,tcp,tls",
    "https": "http,https,tcp,tls",
    "rtmp": "rtmp,tcp",
    "rtmps": "rtmp,rtmps,tcp,tls",
    "file": "file",
}
#: Demuxers a `file:` source may use: video containers and elementary streams, none that names
#: other files (concat, hls, image2, ...).
FILE_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,mpegts,flv,avi,h264,hevc"


def source_of(url: str, media: MediaFolders | None = None) -> tuple[str, dict[str, str], bool]:
    """(what to give av.open, the options that fence it in, whether it is a looping file).

    With `media`, a `file:` URL must name a plain file inside those folders (MediaRefused);
    without (a reader made by hand, as the benches do), only the static rule applies."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in PROTOCOLS:
        raise MediaRefused(f"unsupported URL scheme {scheme!r}")
    options = {"protocol_whitelist": PROTOCOLS[scheme]}
    if scheme != "file":
        return url, options, False
    if media is not None:
        path = media.open_path(url)
    else:
        try:
            path = file_url_path(url)
        except ValueError as exc:
            raise MediaRefused(str(exc)) from None
    # `file:` in front: FFmpeg reads the rest as a path, never as another protocol's URL
    return f"file:{path}", {**options, "format_whitelist": FILE_FORMATS}, True


class StreamReader(threading.Thread):
    def __init__(
        self,
        camera_id: int,
        url: str,
        *,
        size: tuple[int, int] = (640, 360),
        interval: float = 2.0,
        transport: str = "tcp",
        open_timeout: float = 5.0,
        read_timeout: float = 5.0,
        max_backoff: float = 4.0,
        on_packet: Callable[[int, av.Packet], None] | None = None,
        public_url: str | None = None,
        media_dirs: Iterable[Path] | None = None,
        damage_window: float = DAMAGE_WINDOW,
        clock: Clock = time,
    ) -> None:
        super().__init__(name=f"reader-{camera_id}", daemon=True)
        self.camera_id = camera_id
        self.url = url
        self.size = size
        self.interval = interval
        self.transport = transport
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self.max_backoff = max_backoff
        self.on_packet = on_packet
        self.public_url = public_url or url  # what errors may show: never the credentials
        # where `file:` sources may be (None: not checked here, the caller did — benches, tests)
        self.media = None if media_dirs is None else MediaFolders(media_dirs)
        self.stats = StreamStats()
        self.damage_window = damage_window
        self.clock = clock
        self._damage: deque[float] = deque(maxlen=DAMAGE_MEMORY)  # when each recent damaged frame came
        self._damage_note: str | None = None  # the last_error this reader wrote about them
        self._settled = False  # a clean picture has come since the decoder (re)started
        self._keyframes_only = True
        # A keyframe waits for the next packet: FFmpeg's parser splits a picture whose slices
        # each carry the parameter sets again (a GStreamer relay's config-interval=-1 does that),
        # and each part decoded alone comes out half concealed. Its parts share a timestamp.
        self._pending: list[bytes] = []
        self._pending_pts: int | None = None
        self._pending_at, self._pending_due = 0.0, False
        self._skipped_pts: int | None = None  # the last keyframe skipped as not due
        self._show_damaged = True  # whether a damaged picture may still be analysed
        self._latest: tuple[float, np.ndarray] | None = None
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._next_due = 0.0
        self._started_at = clock.monotonic()

    # -- for the worker ---------------------------------------------------------------------
    def take_latest(self) -> tuple[float, np.ndarray] | None:
        """The newest analysed frame (Unix time, RGB array), once; None if none is new."""
        with self._lock:
            latest, self._latest = self._latest, None
        return latest

    def silent_for(self, now: float | None = None) -> float:
        """Seconds since the last packet (since the start, before the first one). This, not
        the connection state, decides offline: a frozen server keeps its TCP socket open, and
        FFmpeg only gives up on it after about twice its socket timeout."""
        now = self.clock.monotonic() if now is None else now
        return now - (self.stats.last_packet_at or self._started_at)

    def stop(self) -> None:
        self._halt.set()

    # -- one packet at a time: the thread below, or a caller driving the reader itself ------
    def prepare(self, codec: av.codec.context.CodecContext) -> None:
        """Set up a freshly opened stream's decoder the way every session does (one thread,
        damaged HEVC pictures flagged, not dropped), and start decoding afresh; UnsupportedStream
        for a codec Lookout does not handle."""
        if codec.name not in SUPPORTED_CODECS:
            raise UnsupportedStream(f"unsupported video codec {codec.name}: set the camera's encoder to "
                                    "H.264 or H.265")
        # One decoding thread per camera: frame threading would hold each frame back until
        # later packets arrive (and keyframe-only decoding feeds one packet at a time);
        # parallelism comes from the many cameras of a worker instead.
        codec.thread_count = 1
        # HEVC drops a picture with lost references unless asked for it; asked, it flags it.
        # H.264's concealed pictures were always analysed; HEVC's were not, and stay so.
        self._show_damaged = codec.name != "hevc"
        if not self._show_damaged:
            codec.flags |= av.codec.context.Flags.output_corrupt
        self._settled, self._pending, self._skipped_pts = False, [], None
        self.stats.codec, self.stats.width, self.stats.height = codec.name, codec.width, codec.height

    def rewound(self, codec: av.codec.context.CodecContext) -> None:
        """The container was seeked (a clip looping): what the decoder and the reader held
        belongs to the old position."""
        codec.flush_buffers()
        self._settled, self._pending, self._skipped_pts = False, [], None

    def feed(self, packet: av.Packet, pts: float, codec: av.codec.context.CodecContext) -> None:
        """One demuxed packet (`pts` in seconds): decoded if due (then `take_latest` has it),
        then handed to `on_packet`."""
        self._on_packet(packet, pts, codec)
        if self.on_packet is not None:  # after decoding: the muxer may rewrite the packet
            self.on_packet(self.camera_id, packet)

    # -- the thread -------------------------------------------------------------------------
    def run(self) -> None:
        backoff = 0.25
        while not self._halt.is_set():
            started = time.monotonic()
            try:
                self._session()
            except Exception as exc:  # noqa: BLE001 - every failure of one camera stays with that camera
                self.stats.last_error = _describe(exc, self.url, self.public_url)
                log.info("stream_disconnected", extra={"camera_id": self.camera_id, "error": self.stats.last_error})
            finally:
                self.stats.connected = False
            if self._halt.is_set():
                break
            if time.monotonic() - started > 30:  # it had been streaming for a while: start over
                backoff = 0.25
            self.stats.reconnects += 1
            self._halt.wait(backoff * random.uniform(0.5, 1.0))
            backoff = min(self.max_backoff, backoff * 2)

    def _open(self, source: str, options: dict[str, str]) -> av.container.InputContainer:
        if source.startswith("rtsp"):
            # FFmpeg's own socket timeout (µs): a frozen server keeps TCP open, and the RTSP
            # demuxer would otherwise wait on it far longer than PyAV's read timeout.
            options = {**options, "rtsp_transport": self.transport, "timeout": str(int(self.read_timeout * 1e6))}
        return av.open(source, options=options, timeout=(self.open_timeout, self.read_timeout))

    def _session(self) -> None:
        source, options, is_file = source_of(self.url, self.media)  # checked again at every open
        with self._open(source, options) as container:
            if not container.streams.video:
                raise StreamEnded("no video stream")
            stream = container.streams.video[0]
            codec = stream.codec_context
            self.prepare(codec)
            self.stats.connected = True
            self.stats.last_error = None
            log.info("stream_connected", extra={"camera_id": self.camera_id, "codec": codec.name,
                                                 "width": codec.width, "height": codec.height})
            time_base = float(stream.time_base) if stream.time_base else 1 / 90000
            pace_start: float | None = None
            first_pts: float | None = None
            while not self._halt.is_set():
                for packet in container.demux(stream):
                    if self._halt.is_set():
                        return
                    if packet.size == 0:  # the end: a flush packet, no exception
                        break
                    pts = packet_seconds(packet, time_base)
                    if is_file:  # play a clip at its own rate, like a camera
                        if pace_start is None or first_pts is None:
                            pace_start, first_pts = time.monotonic(), pts
                        ahead = (pts - first_pts) - (time.monotonic() - pace_start)
                        if ahead > 0 and self._halt.wait(min(ahead, 1.0)):
                            return
                    self.feed(packet, pts, codec)
                else:
                    return
                if not is_file:
                    raise StreamEnded("stream ended")
                container.seek(0)
                self.rewound(codec)
                pace_start = first_pts = None

    def _on_packet(self, packet: av.Packet, pts: float, codec: av.codec.context.CodecContext) -> None:
        now = self.clock.monotonic()
        stats = self.stats
        stats.packets += 1
        stats.bytes += packet.size
        stats.last_packet_at = now
        if packet.is_keyframe:
            stats.keyframes += 1
            if stats._last_key_pts is not None and pts > stats._last_key_pts:
                stats.keyframe_interval = pts - stats._last_key_pts
            stats._last_key_pts = pts
            if self._damage and now - self._damage[0] > self.damage_window:
                self._count_damage(now)
        due = now >= self._next_due
        keyframes_only = stats.keyframe_interval is None or self.interval >= stats.keyframe_interval
        if keyframes_only != self._keyframes_only:
            # every packet from now on, mid-GOP: the pictures before the next keyframe lack references
            self._keyframes_only, self._settled = keyframes_only, False
        if self._pending:
            if packet.is_keyframe and self._pending_pts in (packet.pts, None):
                self._pending.append(bytes(packet))  # the rest of a keyframe split over packets
                return
            # stamped with its arrival: the next one is due an interval after that, not after this
            self._decode(codec, av.Packet(b"".join(self._pending)), self._pending_at, self._pending_due)
            self._pending = []
        if keyframes_only:
            if not packet.is_keyframe:
                self._skipped_pts = None
                return
            if not due or (packet.pts is not None and packet.pts == self._skipped_pts):
                self._skipped_pts = packet.pts  # not due: skipped, and the rest of it with it
                return
            codec.skip_frame = "NONKEY"
        else:
            codec.skip_frame = "DEFAULT"
        if packet.is_keyframe:  # decoded with the next packet, unless that one is the rest of it
            self._pending, self._pending_pts, self._pending_at, self._pending_due = [bytes(packet)], packet.pts, now, due
            return
        self._decode(codec, packet, now, due)

    def _decode(self, codec: av.codec.context.CodecContext, packet: av.Packet, now: float, due: bool) -> None:
        """Decode one picture's packet; analyse the picture if due."""
        stats = self.stats
        try:
            frames = codec.decode(packet)
            if self._keyframes_only and not frames:
                # a decoder with reordering delay (B-frames) holds the picture back until more
                # packets come; a lone keyframe needs none, so drain it out and start afresh
                frames = codec.decode(None)
                codec.flush_buffers()
        except av.error.FFmpegError as exc:  # a packet the decoder rejects: a damaged frame too
            self._damaged(now, 1, exc.strerror or type(exc).__name__)
            return
        picture, damaged = None, 0
        for frame in frames:  # mostly one: a few attribute reads per decoded picture
            if frame.key_frame or self._keyframes_only:  # it needs no references: flagged, it is damaged
                self._settled = True
            if not frame.is_corrupt:
                self._settled, picture = True, frame
            elif self._settled:
                damaged += 1
                if self._show_damaged:
                    picture = frame
        if damaged:
            self._damaged(now, damaged, "damaged picture")
        if picture is None:
            return
        if picture.width != stats.width or picture.height != stats.height:
            self._resized(picture.width, picture.height)
        if not due:
            return
        width, height = self.size
        # AREA: the right filter for shrinking (no aliasing), and cheaper than the default
        # bicubic; the configured size whatever the camera's own, which may change mid-stream
        image = picture.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")
        stats.decoded += 1
        stats.last_frame_at = now
        # 10 % slack: with an interval equal to the GOP, the next keyframe arriving a hair
        # early must still count, or every other one would be skipped
        self._next_due = now + 0.9 * self.interval
        with self._lock:
            self._latest = (self.clock.time(), image)

    def _damaged(self, now: float, count: int, reason: str) -> None:
        """Count `count` damaged frames; the first after a clean spell is logged (once, not per
        frame: a broken link damages every frame)."""
        if not self._damage:
            log.warning("stream_corrupt", extra={"camera_id": self.camera_id, "codec": self.stats.codec,
                                                 "reason": reason, "decode_errors": self.stats.decode_errors + count})
        self.stats.decode_errors += count
        self._damage.extend([now] * min(count, DAMAGE_MEMORY))
        self._count_damage(now)

    def _count_damage(self, now: float) -> None:
        """Forget damaged frames older than the window; say how many are left in `last_error`
        (bounded text: a number and a fixed phrase), or take back what it said once none is."""
        damage, stats = self._damage, self.stats
        while damage and now - damage[0] > self.damage_window:
            damage.popleft()
        stats.recent_decode_errors = count = len(damage)
        if count:
            label = CODEC_LABELS.get(stats.codec or "", "video")
            more = "+" if count == DAMAGE_MEMORY else ""
            self._damage_note = (f"corrupt {label} data: {count}{more} damaged frame{'s' if count > 1 else ''} "
                                 f"in the last {self.damage_window:g} s")
            stats.last_error = self._damage_note
            return
        if stats.last_error is not None and stats.last_error == self._damage_note:
            stats.last_error = None
        self._damage_note = None
        log.info("stream_corrupt_cleared", extra={"camera_id": self.camera_id, "decode_errors": stats.decode_errors,
                                                  "window_seconds": self.damage_window})

    def _resized(self, width: int, height: int) -> None:
        """The camera sends another size (reconfigured, or its stream switched): report it."""
        stats = self.stats
        if stats.width and stats.height:  # not the first size learnt, where the SDP had none
            log.info("stream_resolution_changed", extra={"camera_id": self.camera_id, "old_width": stats.width,
                                                         "old_height": stats.height, "width": width, "height": height})
        stats.width, stats.height = width, height


def packet_seconds(packet: av.Packet, time_base: float) -> float:
    """A packet's presentation time in seconds (its decoding time when it has none)."""
    return (packet.pts if packet.pts is not None else packet.dts or 0) * time_base


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s'\"]*@")


def _describe(exc: Exception, url: str, public_url: str) -> str:
    """What the camera's status and the log may say of a failure: never the URL the reader
    opened (`url` holds the credentials, in its userinfo, query or path), only `public_url`.
    FFmpeg's errors quote the URL whole, so they are described by their reason alone."""
    if isinstance(exc, MediaRefused):
        return str(exc)
    if isinstance(exc, av.error.HTTPUnauthorizedError) or "401" in str(exc):
        return "authentication failed (401)"
    if isinstance(exc, av.error.FileNotFoundError):
        return f"not found: {public_url}"
    if isinstance(exc, av.error.ExitError) or "Immediate exit requested" in str(exc):
        return "timed out"
    if isinstance(exc, (av.error.FFmpegError, OSError)) and getattr(exc, "strerror", None):
        text = f"{type(exc).__name__}: {exc.strerror}"
    else:
        text = f"{type(exc).__name__}: {exc}".replace(url, public_url)
    return _USERINFO.sub(r"\1", text)[:300]


def latest_batch(readers: Iterable[StreamReader]) -> FrameBatch:
    """The newest analysed frame of every reader that has a new one, as one batch."""
    ids, times, frames = [], [], []
    for reader in readers:
        latest = reader.take_latest()
        if latest is not None:
            ids.append(reader.camera_id)
            times.append(latest[0])
            frames.append(latest[1])
    return FrameBatch.stack(ids, times, frames)
