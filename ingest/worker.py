"""`lookout worker`: one ingest process, owning its share of the registry's enabled cameras.

Each step (every `worker.step_seconds`) the worker beats its heartbeat, computes the
placement of every enabled camera over the live workers (`ingest.assignment`), renews or
takes the leases of its own share and gives back the rest. Registry changes arrive on the
`lookout:registry` stream and wake the worker at once, so a camera added, changed,
disabled or deleted through the API is picked up within one round trip; the full list is
also re-read every `RECONCILE_SECONDS` in case a notification was lost.

Holding a lease is what lets a stream reader run for a camera: `ingest.camera_runner`
attaches through `on_assign` / `on_release` / `on_change` and does its work in `tick`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

import numpy as np
import redis
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from config.redis_names import REGISTRY_STREAM
from ingest.assignment import Leases, Membership, rendezvous
from registry.cameras import Camera

log = logging.getLogger("lookout.worker")
RECONCILE_SECONDS = 60.0
Hook = Callable[[set[int]], None]


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class IngestWorker:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        client: redis.Redis,
        worker_id: str | None = None,
        ttl: float = 9.0,
        step_seconds: float = 2.0,
        on_assign: Hook | None = None,
        on_release: Hook | None = None,
        on_change: Hook | None = None,
        on_taught: Hook | None = None,
        tick: Callable[[], object] | None = None,
        tick_seconds: float = 1.0,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.sessions = sessions
        self.client = client
        self.worker_id = worker_id or new_worker_id()
        self.step_seconds = step_seconds
        self.membership = Membership(client, self.worker_id, ttl)
        self.leases = Leases(client, self.worker_id, ttl)
        self.on_assign = on_assign or (lambda ids: None)
        self.on_release = on_release or (lambda ids: None)
        self.on_change = on_change or (lambda ids: None)  # owned cameras edited in the registry
        # owned cameras whose suppressions changed (an operator marked a false alarm): reloaded
        # without a restart, which would cut the stream and the recording for seconds each time
        self.on_taught = on_taught or (lambda ids: None)
        self.tick = tick
        self.tick_seconds = tick_seconds
        self.camera_ids = np.empty(0, dtype=np.int64)
        self.owned: set[int] = set()
        self._feed_id = "$"
        self._loaded_at = 0.0
        self._feed_down_since: float | None = None  # monotonic start of a registry feed outage
        self.stop_event = stop_event or threading.Event()

    def load_cameras(self) -> None:
        with self.sessions() as session:
            ids = session.scalars(select(Camera.id).where(Camera.enabled.is_(True)).order_by(Camera.id)).all()
        self.camera_ids = np.fromiter(ids, dtype=np.int64, count=len(ids))
        self._loaded_at = time.monotonic()

    def step(self) -> None:
        """One round: heartbeat, placement, leases. Safe to call at any rate."""
        self.membership.beat()
        live = self.membership.live()
        if self.worker_id not in live:
            live = sorted([*live, self.worker_id])
        owners = rendezvous(self.camera_ids, live)
        mine = self.camera_ids[owners == live.index(self.worker_id)].tolist()
        held = self.leases.claim(mine)
        gone = self.owned - held
        if gone:
            self.leases.release(gone)
            self.on_release(gone)
        new = held - self.owned
        if new:
            self.on_assign(new)
        if new or gone:
            log.info("assignment_changed", extra={
                "worker_id": self.worker_id, "workers": len(live), "cameras": len(held),
                "assigned": len(new), "released": len(gone), "sample": sorted(new)[:5]})
        self.owned = held

    def _wait_for_registry(self, timeout: float) -> list[dict[str, str]] | None:
        """Block on the registry stream for up to `timeout`; the new entries, if any. An outage
        is said once when it starts and once when it ends, not on every loop pass."""
        try:
            entries = self.client.xread({REGISTRY_STREAM: self._feed_id}, block=max(1, int(timeout * 1000)), count=1000)
        except redis.RedisError as exc:
            if self._feed_down_since is None:
                self._feed_down_since = time.monotonic()
                log.warning("registry_feed_unavailable", extra={"worker_id": self.worker_id, "error": str(exc)[:300]})
            self.stop_event.wait(timeout)
            return None
        if self._feed_down_since is not None:
            log.info("registry_feed_restored", extra={
                "worker_id": self.worker_id, "down_s": round(time.monotonic() - self._feed_down_since, 1)})
            self._feed_down_since = None
        if not entries:
            return None
        self._feed_id = entries[0][1][-1][0]
        return [fields for _, fields in entries[0][1]]

    def _apply(self, changes: list[dict[str, str]]) -> None:
        self._reload()
        # `create` too: SQLite gives a deleted camera's id to the next camera registered, and when
        # both changes come in one read the id never leaves this worker's share — without a
        # restart its reader would go on reading the deleted camera's stream, and the tracker
        # would keep that camera's status, which the new row never shows
        edited = {int(c["camera_id"]) for c in changes
                  if c.get("op") in ("update", "create") and c.get("camera_id")}
        if any(c.get("op") == "bulk" for c in changes):
            edited |= self.owned
        if edited & self.owned:
            self.on_change(edited & self.owned)
        taught = {int(c["camera_id"]) for c in changes if c.get("op") == "taught" and c.get("camera_id")}
        if (taught & self.owned) - edited:  # a restart reloads them anyway
            self.on_taught((taught & self.owned) - edited)

    def _start(self) -> bool:
        """Where the registry feed stands, and the camera list: retried while Redis or the
        database is away (they may go again right after the process waited for them)."""
        while not self.stop_event.is_set():
            try:
                self._feed_id = (self.client.xinfo_stream(REGISTRY_STREAM)["last-generated-id"]
                                 if self.client.exists(REGISTRY_STREAM) else "0-0")
                self.load_cameras()
                return True
            except (redis.RedisError, DBAPIError) as exc:
                log.warning("worker_start_waiting", extra={"worker_id": self.worker_id, "error": str(exc)[:300],
                                                           "retry_in": self.step_seconds})
                self.stop_event.wait(self.step_seconds)
        return False

    def _reload(self) -> None:
        """The camera list again; on a database error the old one stays until the next try."""
        try:
            self.load_cameras()
        except DBAPIError as exc:
            log.warning("worker_cameras_not_reloaded", extra={"worker_id": self.worker_id, "error": str(exc)[:300]})
            self._loaded_at = time.monotonic() - RECONCILE_SECONDS + self.step_seconds  # again after a step

    def run(self) -> None:
        """Until `stop_event`: steps on a timer, and at once when the registry changes."""
        if not self._start():
            return
        log.info("worker_started", extra={"worker_id": self.worker_id, "cameras": len(self.camera_ids)})
        next_step = next_tick = 0.0
        while not self.stop_event.is_set():
            now = time.monotonic()
            if now - self._loaded_at > RECONCILE_SECONDS:
                self._reload()
            if now >= next_step:
                try:
                    self.step()
                except (redis.RedisError, DBAPIError) as exc:  # a lease taken reads the registry
                    log.warning("worker_step_failed", extra={"worker_id": self.worker_id, "error": str(exc)[:300]})
                next_step = time.monotonic() + self.step_seconds
            if self.tick is not None and now >= next_tick:
                try:
                    self.tick()
                except Exception:  # one bad tick must not stop the worker
                    log.exception("worker_tick_failed", extra={"worker_id": self.worker_id})
                next_tick = time.monotonic() + self.tick_seconds
            wake = min(next_step, next_tick if self.tick is not None else next_step)
            changes = self._wait_for_registry(max(0.05, wake - time.monotonic()))
            if changes:
                self._apply(changes)
                next_step = 0.0
        self.shutdown()

    def shutdown(self) -> None:
        """Leave cleanly: the others take these cameras at their next step, not after a TTL."""
        try:
            self.leases.release(self.owned)
            self.membership.leave()
        except redis.RedisError:
            pass
        if self.owned:
            self.on_release(set(self.owned))
        log.info("worker_stopped", extra={"worker_id": self.worker_id, "released": len(self.owned)})
        self.owned = set()
