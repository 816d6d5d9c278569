"""Per-camera stream figures, published by the worker that reads the camera, read by the API.

Kept in the Redis hash `lookout:stream_figures` (camera id → JSON), so that any API process
can show them whichever worker holds the camera. Each entry carries its time; an entry older
than `STALE_SECONDS` is from a worker that stopped publishing and is not shown.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from config.redis_names import STREAM_FIGURES_HASH
from ingest.stream_stats import StreamStats

STALE_SECONDS = 60.0


@dataclass
class _Mark:
    at: float
    packets: int
    decoded: int
    bytes: int


class FigurePublisher:
    """Turns readers' counters into rates over each publishing interval."""

    def __init__(self, client: redis.Redis, worker_id: str = "") -> None:
        self.client = client
        self.worker_id = worker_id
        self.marks: dict[int, _Mark] = {}

    def publish(self, stats: dict[int, StreamStats], now: float | None = None) -> None:
        now = time.time() if now is None else now
        values: dict[str, str] = {}
        for camera_id, s in stats.items():
            mark = self.marks.get(camera_id)
            span = now - mark.at if mark else 0.0
            rate = (lambda a, b, span=span: round((a - b) / span, 2)) if mark and span > 0 else (lambda a, b: None)
            values[str(camera_id)] = json.dumps({
                "at": round(now, 3),
                "worker_id": self.worker_id,
                "connected": s.connected,
                "codec": s.codec,
                "width": s.width,
                "height": s.height,
                "packets_per_second": rate(s.packets, mark.packets) if mark else None,
                "decoded_per_second": rate(s.decoded, mark.decoded) if mark else None,
                "frames_decoded": s.decoded,
                "bitrate_kbps": (round((s.bytes - mark.bytes) * 8 / span / 1000, 1) if mark and span > 0 else None),
                "keyframe_interval_seconds": None if s.keyframe_interval is None else round(s.keyframe_interval, 3),
                "reconnects": s.reconnects,
                "decode_errors": s.decode_errors,  # damaged frames (ingest.stream_reader)
                "recent_decode_errors": s.recent_decode_errors,  # of which in the reader's damage window
                "last_error": s.last_error,
            })
            self.marks[camera_id] = _Mark(now, s.packets, s.decoded, s.bytes)
        if values:
            self.client.hset(STREAM_FIGURES_HASH, mapping=values)

    def forget(self, camera_ids: set[int]) -> None:
        for camera_id in camera_ids:
            self.marks.pop(camera_id, None)
        if camera_ids:
            self.client.hdel(STREAM_FIGURES_HASH, *[str(c) for c in camera_ids])


def read_figures(client: redis.Redis, camera_ids: list[int] | None = None, now: float | None = None) -> dict[int, dict[str, Any]]:
    """Fresh figures of `camera_ids` (all when None)."""
    now = time.time() if now is None else now
    if camera_ids is None:
        raw = client.hgetall(STREAM_FIGURES_HASH).items()
    else:
        raw = zip((str(c) for c in camera_ids),
                  client.hmget(STREAM_FIGURES_HASH, [str(c) for c in camera_ids]) if camera_ids else [])
    out = {}
    for key, value in raw:
        if value is None:
            continue
        data = json.loads(value)
        if now - data["at"] <= STALE_SECONDS:
            out[int(key)] = data
    return out
