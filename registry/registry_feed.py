"""Tells the ingest workers that the registry changed, through the Redis stream `lookout:registry`.

Entries are `{op: create|update|delete|bulk|taught, camera_id, at}`; workers read the stream and
re-read the cameras it names (`bulk` means: re-read everything; `taught`: only what operators
taught the camera, `registry.suppressions`, without restarting its stream). The database stays the
truth: a notification lost while Redis is down costs only latency, because workers also
reconcile with the database on a slow timer, so a write never fails because Redis is down.
"""

from __future__ import annotations

import logging
import time

import redis

from config.redis_names import REGISTRY_STREAM

log = logging.getLogger("lookout.registry")


class RegistryFeed:
    def __init__(self, client: redis.Redis | None, maxlen: int = 100_000) -> None:
        self.client = client
        self.maxlen = maxlen

    def publish(self, op: str, camera_id: int | None = None) -> None:
        if self.client is None:
            return
        fields = {"op": op, "camera_id": "" if camera_id is None else str(camera_id), "at": f"{time.time():.3f}"}
        try:
            self.client.xadd(REGISTRY_STREAM, fields, maxlen=self.maxlen, approximate=True)
        except redis.RedisError as exc:
            log.warning("registry_notify_failed", extra={"op": op, "camera_id": camera_id, "error": str(exc)})
