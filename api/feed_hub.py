"""The live feed inside one API process: one reader of the change feed, many listeners.

A thread waits on the doorbell (`lookout:alerts`), reads the new changes from the database
once, renders each once, and hands it to every listener whose filter takes it (unit scope
always; kinds, severity, addressed-only as the listener asked). A listener that falls too far
behind is dropped, and its client resumes by id, so nobody ever misses a change silently.

A feed outlives the check of its token at open, so the same thread re-checks every listener's
token every `CHECK_SECONDS`, all of them in one query (digests, not tokens, are kept): a token
revoked (sign-out, a new password, the person disabled) or expired ends its listeners with
`REVOKED`, and one whose person moved to another unit ends with `MOVED` (its filter holds the
old scope; the client reconnects and gets the new one).

When the server stops (`closing`), every feed ends as if it fell behind: the client reconnects
once the server is back and resumes from its last id, and the server need not wait for it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from sqlalchemy.orm import Session

from alerts.feed import changes_after, last_change_id, wait_for_ring
from alerts.feed_items import FeedFilter, FeedItem
from config.redis_names import ALERTS_DOORBELL
from registry.users import live_tokens

log = logging.getLogger("lookout.alerts")
QUEUE_LIMIT = 10_000
CHECK_SECONDS = 2.0  # how often every listener's token is checked again
BEHIND, REVOKED, MOVED = "behind", "revoked", "moved"  # why a listener ended


@dataclass(eq=False)
class Listener:
    filter: FeedFilter
    loop: asyncio.AbstractEventLoop
    token_digest: str = ""  # the SHA-256 of the token it opened with (see `FeedHub.revalidate`)
    queue: asyncio.Queue[FeedItem | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    dropped: bool = False
    reason: str | None = None  # BEHIND, REVOKED or MOVED once dropped

    def offer(self, item: FeedItem) -> None:
        """Called in the loop's thread."""
        if self.dropped:
            return
        if self.queue.qsize() >= QUEUE_LIMIT - 1:
            self.end(BEHIND)  # the client reconnects from its last id
            return
        self.queue.put_nowait(item)

    def end(self, reason: str) -> None:
        """Called in the loop's thread: no more items; the follower sees None and `reason`.
        A revoked listener gets nothing that is still queued either."""
        if self.dropped:
            return
        self.dropped, self.reason = True, reason
        if reason != BEHIND:
            while not self.queue.empty():
                self.queue.get_nowait()
        self.queue.put_nowait(None)


class FeedHub:
    def __init__(self, sessions: Callable[[], Session], client: redis.Redis | None, poll_seconds: float = 1.0) -> None:
        self.sessions, self.client, self.poll_seconds = sessions, client, poll_seconds
        self.listeners: set[Listener] = set()
        self.lock = threading.Lock()
        self.last_id = 0
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.checked_at = 0.0
        self._closing = False

    def start(self) -> None:
        with self.sessions() as session:
            self.last_id = last_change_id(session)
        self.thread = threading.Thread(target=self._run, name="alert-feed", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.client is not None:  # wake the thread from its wait on the doorbell (nothing new for anyone)
            try:
                self.client.xadd(ALERTS_DOORBELL, {"last": self.last_id}, maxlen=10_000, approximate=True)
            except redis.RedisError:
                pass  # then it wakes by itself within `poll_seconds`
        if self.thread is not None:
            self.thread.join(5)

    def closing(self) -> None:
        """The server stops: end every open feed (BEHIND) within `poll_seconds`, so that it does
        not wait for them. Only sets a flag, so a signal handler may call it; the hub's thread
        ends them."""
        self._closing = True

    def add(self, flt: FeedFilter, token_digest: str = "") -> Listener:
        listener = Listener(flt, asyncio.get_running_loop(), token_digest)
        with self.lock:
            self.listeners.add(listener)
        return listener

    def remove(self, listener: Listener) -> None:
        with self.lock:
            self.listeners.discard(listener)

    def backlog(self, flt: FeedFilter, after: int, until: int, limit: int = 1000) -> tuple[list[FeedItem], int]:
        """One page of the changes after `after` up to `until` that `flt` takes, from the
        database (to resume), and the id it read up to."""
        with self.sessions() as session:
            rows = [row for row in changes_after(session, after, limit) if row.id <= until]
        items = [item for item in map(FeedItem.of, rows) if flt.takes(item)]
        return items, rows[-1].id if rows else until

    def _run(self) -> None:
        doorbell = "$"
        while not self.stop_event.is_set():
            try:
                doorbell = wait_for_ring(self.client, doorbell, self.poll_seconds, self.stop_event)
                self._deliver()
                if self._closing:
                    self._end_all()
                if time.monotonic() - self.checked_at >= CHECK_SECONDS:
                    self.checked_at = time.monotonic()
                    self.revalidate()
            except Exception as exc:  # noqa: BLE001 - the feed must outlive a database or Redis outage
                log.warning("alert_feed_waiting", extra={"error": str(exc)[:300]})
                self.stop_event.wait(self.poll_seconds)

    def _end_all(self) -> None:
        with self.lock:
            listeners = [listener for listener in self.listeners if not listener.dropped]
        for listener in listeners:
            listener.loop.call_soon_threadsafe(listener.end, BEHIND)

    def revalidate(self) -> int:
        """End the listeners whose token is no longer valid (REVOKED) or whose person's unit
        changed (MOVED): one query for all of them. How many ended."""
        with self.lock:
            listeners = [listener for listener in self.listeners if listener.token_digest and not listener.dropped]
        if not listeners:
            return 0
        with self.sessions() as session:
            valid = live_tokens(session, sorted({listener.token_digest for listener in listeners}))
        ended = 0
        for listener in listeners:
            scope = valid.get(listener.token_digest)
            reason = REVOKED if scope is None else MOVED if scope != listener.filter.scope else None
            if reason is not None:
                listener.loop.call_soon_threadsafe(listener.end, reason)
                ended += 1
        if ended:
            log.info("alert_feed_listeners_ended", extra={"count": ended})
        return ended

    def _deliver(self) -> None:
        while True:
            with self.sessions() as session:
                rows = changes_after(session, self.last_id, 500)
            if not rows:
                return
            items = [FeedItem.of(row) for row in rows]
            self.last_id = items[-1].id
            with self.lock:
                listeners = list(self.listeners)
            taken: dict[FeedFilter, list[FeedItem]] = {}  # operators of one unit share a filter: test it once
            for listener in listeners:
                mine = taken.get(listener.filter)
                if mine is None:
                    mine = taken[listener.filter] = [item for item in items if listener.filter.takes(item)]
                if mine:
                    listener.loop.call_soon_threadsafe(_offer_all, listener, mine)
            if len(rows) < 500:
                return


def _offer_all(listener: Listener, items: list[FeedItem]) -> None:
    for item in items:
        listener.offer(item)
