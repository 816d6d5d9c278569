"""The alert engine: consumes `lookout:events` and makes every event part of exactly one alert.

It reads through the Redis consumer group `alert-engine`, so several engines share the work.
Each batch is one database transaction (the alerts, the events they merged, the feed, the
audit rows: `alerts.absorb`); only after it commits are the stream entries acknowledged.
A crash before the commit leaves the entries pending, and they are delivered again; a crash
after it makes the redelivery find the event ids already stored and skip them. Entries pending
at a consumer that has been silent for `claim_idle_seconds` (a dead engine) are claimed by a
live one.

A database that is away (down, unreachable, out of pooled connections, a connection found
dead, a standby that refuses writes after a failover: `config.database.database_down`) and a
Redis that is away stop the batch whole: it stays pending here and is tried again, first thing,
once they are back. Only an event that fails alone, with both up, is set aside as rejected.

Engines take turns per batch (the `alert_engine` counter row is the lock), so two engines
never both open an alert for the same fire. Between batches each engine runs the deadline
sweep (escalations, and offline alerts whose camera has stayed back long enough).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

import redis
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from alerts import feed
from alerts.absorb import Absorbed, Absorber
from alerts.escalation import sweep
from alerts.policy import AlertPolicy
from config.database import database_down, utcnow
from config.redis_names import ALERT_ENGINE_GROUP, EVENTS_STREAM, REJECTED_EVENTS_STREAM
from detectors.events import Event

log = logging.getLogger("lookout.alerts")


def away(exc: BaseException) -> bool:
    """True when `exc` says Redis or the database is away (wait and retry the same batch), not
    that an event is bad."""
    return isinstance(exc, redis.RedisError) or database_down(exc)


class AlertEngine:
    """The consumer loop around `Absorber`: read or claim a batch, commit it, acknowledge it."""

    def __init__(self, sessions: sessionmaker[Session], client: redis.Redis, policy: AlertPolicy,
                 consumer: str | None = None, stream: str = EVENTS_STREAM) -> None:
        self.sessions, self.client, self.policy, self.stream = sessions, client, policy, stream
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        settings = policy.settings
        self.batch = settings.engine_batch
        self.claim_idle_ms = int(settings.claim_idle_seconds * 1000)
        self.sweep_every = settings.sweep_seconds
        self.stop_event = threading.Event()
        self._last_claim = 0.0
        self._last_sweep = 0.0
        self._behind = False  # the last read filled a whole batch: more events are waiting
        self._unfinished: list[tuple[str, dict[str, str]]] = []  # read, not committed: a database or Redis error
        self.totals = Absorbed()

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, ALERT_ENGINE_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def run(self, block_ms: int = 500) -> None:
        log.info("alert_engine_started", extra={"consumer": self.consumer})
        backoff = 0.5
        while not self.stop_event.is_set():
            try:
                self.step(block_ms)
                backoff = 0.5
            except Exception as exc:  # a bug must not stop alerting: log it, wait, go on
                if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)) or database_down(exc):
                    log.warning("alert_engine_waiting", extra={"consumer": self.consumer, "error": str(exc)[:300],
                                                              "retry_in": backoff})
                else:
                    log.exception("alert_engine_error", extra={"consumer": self.consumer, "retry_in": backoff})
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        log.info("alert_engine_stopped", extra={"consumer": self.consumer})

    def step(self, block_ms: int = 500) -> int:
        """One round: deadlines if due, entries of dead consumers, then new entries."""
        now = time.monotonic()
        if now - self._last_sweep >= self.sweep_every:
            self._last_sweep = now
            with self.sessions() as session:  # no offline alert clears while its camera's next events wait
                feed.ring(self.client, sweep(session, self.policy, utcnow(), recoveries=not self._behind))
        entries, self._unfinished = self._unfinished, []
        if not entries and now - self._last_claim >= self.claim_idle_ms / 2000:
            self._last_claim = now
            entries = self._claim()
        if not entries:
            entries = self._read(block_ms)
        self._behind = len(entries) >= self.batch
        if entries:
            try:
                self.handle(entries)
            except Exception as exc:
                if away(exc):
                    self._unfinished = entries  # still pending at this consumer: try them first next round
                raise
        return len(entries)

    def _read(self, block_ms: int) -> list[tuple[str, dict[str, str]]]:
        try:
            reply = self.client.xreadgroup(ALERT_ENGINE_GROUP, self.consumer, {self.stream: ">"}, count=self.batch,
                                           block=block_ms)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()  # Redis came back without its data: start the group again
            return []
        return list(reply[0][1]) if reply else []

    def _claim(self) -> list[tuple[str, dict[str, str]]]:
        try:
            reply = self.client.xautoclaim(self.stream, ALERT_ENGINE_GROUP, self.consumer, self.claim_idle_ms,
                                           "0-0", count=self.batch)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()
            return []
        claimed = [(entry_id, data) for entry_id, data in reply[1] if data is not None]
        if claimed:
            log.info("alert_entries_claimed", extra={"consumer": self.consumer, "entries": len(claimed)})
        return claimed

    def handle(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        """Commit the batch's alerts, then acknowledge its entries; entries that cannot be read,
        or that fail alone, go to `lookout:events:rejected` instead of blocking the stream."""
        events: list[Event] = []
        entry_of: dict[str, str] = {}  # event id → stream entry id
        bad: list[tuple[str, dict[str, str], str]] = []
        for entry_id, data in entries:
            try:
                event = Event.from_fields(data)
            except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
                bad.append((entry_id, data, f"unreadable event: {exc}"))
                continue
            events.append(event)
            entry_of.setdefault(event.event_id, entry_id)

        def refused(found: list[tuple[Event, str]]) -> None:
            bad.extend((entry_of[e.event_id], e.fields(), reason) for e, reason in found)

        try:
            refused(self._commit(events))
        except Exception as exc:  # find the event that fails, keep the rest
            if away(exc):
                raise
            log.warning("alert_batch_failed", extra={"consumer": self.consumer, "error": str(exc)[:300]})
            for event in events:
                try:
                    refused(self._commit([event]))
                except Exception as one:
                    if away(one):
                        raise  # (the database went away between two events: the whole batch waits)
                    bad.append((entry_of[event.event_id], event.fields(), f"{type(one).__name__}: {one}"))
        for entry_id, data, reason in bad:
            log.error("alert_event_rejected", extra={"entry": entry_id, "camera_id": data.get("camera_id"),
                                                     "reason": reason[:300]})
            self.client.xadd(REJECTED_EVENTS_STREAM, {**{k: str(v) for k, v in data.items()}, "reason": reason[:1000],
                                                      "entry": entry_id}, maxlen=100_000, approximate=True)
        self.client.xack(self.stream, ALERT_ENGINE_GROUP, *[entry_id for entry_id, _ in entries])

    def _commit(self, events: list[Event]) -> list[tuple[Event, str]]:
        """Absorb `events` in one transaction (retried when someone changed an alert meanwhile);
        the events no alert can take (their camera does not exist...), each with why."""
        for attempt in range(5):
            with self.sessions() as session:
                try:
                    result = Absorber(session, self.policy, utcnow()).run(events)
                    session.commit()
                except StaleDataError:  # a person changed one of these alerts meanwhile: again
                    session.rollback()
                    if attempt == 4:
                        raise
                    continue
            self._count(result)
            feed.ring(self.client, result.last_change)
            return result.rejected
        return []

    def _count(self, result: Absorbed) -> None:
        for name in ("created", "merged", "duplicates", "ignored"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(result, name))
