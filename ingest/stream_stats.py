"""`StreamStats`: what a stream reader has seen of its camera, as plain counters.

Apart from the reader (`ingest.stream_reader`, which needs PyAV), so that what only reads the
figures (`ingest.stream_figures`, which the API imports) does not load PyAV and FFmpeg.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StreamStats:
    """What a reader has seen; read by the worker for status and metrics (no lock needed:
    single writer, and a torn read of a counter is harmless)."""

    packets: int = 0
    bytes: int = 0
    decoded: int = 0
    keyframes: int = 0
    reconnects: int = 0
    decode_errors: int = 0  # damaged frames since the reader started (see `ingest.stream_reader`)
    recent_decode_errors: int = 0  # of which in the last `damage_window` seconds
    keyframe_interval: float | None = None  # seconds between the last two keyframes
    last_packet_at: float | None = None  # time.monotonic()
    last_frame_at: float | None = None
    last_error: str | None = None
    connected: bool = False
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    _last_key_pts: float | None = field(default=None, repr=False)
