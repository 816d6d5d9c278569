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
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import av
import numpy as np

from detectors.frames import FrameBatch
from ingest.fields import file_url_path
from ingest.media_paths import MediaFolders, MediaRefused

log = logging.getLogger("lookout.stream")


@dataclass
class StreamStats:
    """What a reader has seen; read by the worker for status and metrics (no lock needed:
    single writer, and a torn read of a counter is harmless)."""

    packets: int = 0
    bytes: int = 0
    decoded: int = 0
    keyframes: int = 0
    reconnects: int = 0
    decode_errors: int = 0
    keyframe_interval: float | None = None  # seconds between the last two keyframes
    last_packet_at: float | None = None  # time.monotonic()
    last_frame_at: float | None = None
    last_error: str | None = None
    connected: bool = False
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    _last_key_pts: float | None = field(default=None, repr=False)


class StreamEnded(Exception):
    """The source stopped sending: a disconnect for a camera."""


class UnsupportedStream(Exception):
    """The source sends video Lookout does not handle; retried all the same (slowly), since
    a technician may reconfigure the camera."""


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
        self._latest: tuple[float, np.ndarray] | None = None
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._next_due = 0.0
        self._started_at = time.monotonic()

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
        now = time.monotonic() if now is None else now
        return now - (self.stats.last_packet_at or self._started_at)

    def stop(self) -> None:
        self._halt.set()

    # -- the thread -------------------------------------------------------------------------
    def run(self) -> None:
        backoff = 0.25
        while not self._halt.is_set():
            started = time.monotonic()
            try:
                self._session()
            except Exception as exc:  # every failure of one camera stays with that camera
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
            if codec.name not in SUPPORTED_CODECS:
                raise UnsupportedStream(f"unsupported video codec {codec.name}: set the camera's encoder to "
                                        "H.264 or H.265")
            # One decoding thread per camera: frame threading would hold each frame back until
            # later packets arrive (and keyframe-only decoding feeds one packet at a time);
            # parallelism comes from the many cameras of a worker instead.
            codec.thread_count = 1
            self.stats.codec, self.stats.width, self.stats.height = codec.name, codec.width, codec.height
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
                    pts = (packet.pts if packet.pts is not None else packet.dts or 0) * time_base
                    if is_file:  # play a clip at its own rate, like a camera
                        if pace_start is None or first_pts is None:
                            pace_start, first_pts = time.monotonic(), pts
                        ahead = (pts - first_pts) - (time.monotonic() - pace_start)
                        if ahead > 0 and self._halt.wait(min(ahead, 1.0)):
                            return
                    self._on_packet(packet, pts, codec)
                    if self.on_packet is not None:  # after decoding: the muxer may rewrite the packet
                        self.on_packet(self.camera_id, packet)
                else:
                    return
                if not is_file:
                    raise StreamEnded("stream ended")
                container.seek(0)
                codec.flush_buffers()
                pace_start = first_pts = None

    def _on_packet(self, packet: av.Packet, pts: float, codec: av.codec.context.CodecContext) -> None:
        now = time.monotonic()
        stats = self.stats
        stats.packets += 1
        stats.bytes += packet.size
        stats.last_packet_at = now
        if packet.is_keyframe:
            stats.keyframes += 1
            if stats._last_key_pts is not None and pts > stats._last_key_pts:
                stats.keyframe_interval = pts - stats._last_key_pts
            stats._last_key_pts = pts
        due = now >= self._next_due
        keyframes_only = stats.keyframe_interval is None or self.interval >= stats.keyframe_interval
        if keyframes_only:
            if not (due and packet.is_keyframe):
                return
            codec.skip_frame = "NONKEY"
        else:
            codec.skip_frame = "DEFAULT"
        try:
            frames = codec.decode(packet)
            if keyframes_only and not frames:
                # a decoder with reordering delay (B-frames) holds the picture back until more
                # packets come; a lone keyframe needs none, so drain it out and start afresh
                frames = codec.decode(None)
                codec.flush_buffers()
        except av.error.FFmpegError as exc:
            stats.decode_errors += 1
            stats.last_error = f"decode error: {exc.strerror or type(exc).__name__}"
            return
        if not frames or not due:
            return
        width, height = self.size
        # AREA: the right filter for shrinking (no aliasing), and cheaper than the default bicubic
        image = frames[-1].to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")
        stats.decoded += 1
        stats.last_frame_at = now
        # 10 % slack: with an interval equal to the GOP, the next keyframe arriving a hair
        # early must still count, or every other one would be skipped
        self._next_due = now + 0.9 * self.interval
        with self._lock:
            self._latest = (time.time(), image)


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
