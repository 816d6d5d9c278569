"""A worker's durable outbox for its events: nothing a worker saw is lost because Redis was down.

Every event a worker raises (detections, `camera_offline` / `camera_online`) is first written
here, then sent to `lookout:events`; it leaves the outbox only once Redis has answered the
XADD. While Redis is away the events wait, in the order they were put (so each camera's order
holds), and `flush` tries again with a doubling backoff (0.5 s up to 10 s), logging one
`event_outbox_waiting` line per outage and one `event_outbox_drained` when it is empty again.

On disk (`ingest.outbox_files`): one SQLite file per worker process under the outbox folder (WAL, one transaction per
`put`, rows sent in rowid order). Worker ids are random per process, so a file belongs to the
process that holds the exclusive `flock` on its `.lock` twin (a separate file, because closing
any other descriptor of a SQLite database drops SQLite's own POSIX locks on it). A file whose
lock nobody holds was left by a worker that died or stopped while Redis was away: the next
outbox that opens the folder (a restarted worker, or any live one within a minute) moves its
events ahead of its own and deletes it. `synchronous=NORMAL`: a killed process loses nothing;
a power cut may lose the last commits, as Redis's own `appendfsync everysec` does.

A full data disk (which issue 14 expects) must not lose events or stop the worker:
- a `put` the file refuses keeps its events in memory, and while memory holds any, every later
  `put` writes them AHEAD of its own in one transaction (memory only grows until one works), so
  each camera's order holds; `event_outbox_write_failed` once per episode, `..._recovered` after;
- an outbox that cannot make its file at all (mkdir, lock file, CREATE TABLE) starts in memory
  (`event_outbox_unavailable`, once) and tries the file again every `REOPEN_SECONDS`; once it
  opens, what memory held moves into it, in order (`event_outbox_opened`);
- `flush` never raises for the file either: a read error backs off like a Redis outage.

Bounded: at most `max_events` wait; when full, the OLDEST are dropped (the newest say most about
what is happening now) and an `event_outbox_full` warning says how many, at most every 10 s;
`dropped` counts them all. Redelivery is possible (a crash between Redis's answer and the
delete): events keep their ids, and the alert engine stores each id once.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import redis

from config.redis_names import EVENTS_STREAM
from detectors.events import Event
from ingest.outbox_files import (
    let_go,
    memory_db,
    mtime,
    open_file,
    read_orphan,
    remove_db,
    sweep_hidden,
    try_lock,
)

log = logging.getLogger("lookout.outbox")
EVENTS_MAXLEN = 1_000_000  # about a week of a large county's events; older ones are trimmed
#: default bound (bench/outbox.py): at the throughput bench's worst case (80 cameras, every
#: analysed sample an event: 37 events/s) 45 minutes of a Redis outage, at the rate that bench's
#: worker really raised (0.05/s) three weeks; about 40 MB of disk when full (~400 bytes an event,
#: WAL included), drained in about 3 s once Redis is back
DEFAULT_MAX_EVENTS = 100_000
FIRST_RETRY, MAX_RETRY = 0.5, 10.0  # seconds
SEND_BATCH = 1000  # events per pipeline
FLUSH_BUDGET = 0.25  # seconds one flush may spend draining: a long backlog goes over several ticks
ADOPT_SECONDS = 60.0  # how often a live outbox looks for files of dead workers
REOPEN_SECONDS = 30.0  # how often an outbox whose file could not be opened (a full disk) tries again
#: while memory holds events the file refused, how often a `put` tries the file again (each try
#: writes all of them: on a disk that stays full, not every tick)
REWRITE_SECONDS = 2.0
FULL_LOG_SECONDS = 10.0
class Outbox:
    """The events of one worker process not yet acknowledged by the event stream."""

    def __init__(self, folder: Path | None, max_events: int = DEFAULT_MAX_EVENTS, stream: str = EVENTS_STREAM,
                 maxlen: int = EVENTS_MAXLEN) -> None:
        """`folder` None: an in-memory outbox (same code, not durable) for tests and tools."""
        if max_events < 1:
            raise ValueError(f"outbox max_events must be at least 1, not {max_events}")
        self.folder, self.max_events, self.stream, self.maxlen = folder, max_events, stream, maxlen
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self.path: Path | None = None  # None: in memory (no folder, or its file not open yet)
        self._reopen_at = 0.0
        if folder is None:
            self._db = memory_db()
        else:
            try:
                self._lock_fd, self.path, self._db = open_file(folder)
            except (OSError, sqlite3.Error) as exc:  # a full or broken data disk: the worker goes on
                log.error("event_outbox_unavailable", extra={
                    "path": str(folder), "error": str(exc)[:300], "retry_in": REOPEN_SECONDS,
                    "note": "events kept in memory until the file opens; lost if the process ends first"})
                self._db = memory_db()
                self._reopen_at = time.monotonic() + REOPEN_SECONDS
        # rows in the database: the file, or the in-memory one while the file cannot be opened
        self._stored = int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        self._memory: deque[str] = deque()  # newer than every stored row: the file refused them
        self._rewrite_at = 0.0
        self.dropped = 0
        self._dropped_unlogged = 0
        self._full_logged_at = -FULL_LOG_SECONDS
        self.retry_at = 0.0  # monotonic time before which flush does not try Redis again
        self._backoff = FIRST_RETRY
        self._outage_since: float | None = None
        self._outage_sent = 0
        self._adopted_at = 0.0
        # rows Redis took whose delete failed (a full disk): skipped by seq until a delete works
        self._sent_through: int | None = None
        self.closed = False
        self._read_failing = False
        if self.path is not None:
            self.adopt()

    @property
    def pending(self) -> int:
        return self._stored + len(self._memory)

    # -- in ------------------------------------------------------------------------------------
    def put(self, events: Sequence[Event]) -> None:
        """Keep `events` (in this order) until the stream has them; one transaction."""
        if not events:
            return
        if self.closed:
            raise RuntimeError(f"event outbox {self.path or ':memory:'} is closed: {len(events)} events not kept")
        rows = [json.dumps(e.fields(), ensure_ascii=False, separators=(",", ":")) for e in events]
        with self._lock:
            self._store(rows)

    def _store(self, rows: list[str], force: bool = False) -> None:
        """Under the lock: what memory holds, then `rows`, into the database in one transaction;
        when it refuses (disk full, file broken) `rows` join memory, behind what waits there."""
        if self._memory and not force and time.monotonic() < self._rewrite_at:
            self._keep_in_memory(rows)
            return
        kept = [*self._memory, *rows] if self._memory else rows
        if not kept:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO outbox (fields) VALUES (?)", [(r,) for r in kept])
            over = self._trim(self._stored + len(kept))
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            if not self._memory:  # once per episode: every later put tries again
                log.error("event_outbox_write_failed", extra={
                    "path": str(self.path), "events": len(rows), "error": str(exc)[:300],
                    "note": "kept in memory, written ahead of the next events once the file takes them"})
            self._rewrite_at = time.monotonic() + REWRITE_SECONDS
            self._keep_in_memory(rows)
            return
        if self._memory:
            log.info("event_outbox_write_recovered", extra={"path": str(self.path), "events": len(self._memory)})
            self._memory.clear()
        self._stored += len(kept) - over
        if over:
            self._count_dropped(over)

    def _keep_in_memory(self, rows: list[str]) -> None:
        self._memory.extend(rows)
        over = min(len(self._memory), max(0, self.pending - self.max_events))
        for _ in range(over):
            self._memory.popleft()
        if over:
            self._count_dropped(over)

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # a connection broken beyond a rollback: the next statement says so again

    def _trim(self, count: int) -> int:
        """Inside a transaction: delete the oldest rows beyond the bound; how many."""
        over = max(0, count - self.max_events)
        if over:
            self._db.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE seq > ? ORDER BY seq "
                             "LIMIT ?)", (self._floor(), over))
        return over

    def _floor(self) -> int:
        """Rows at or below this seq were sent already (their delete is still owed)."""
        return -(2**62) if self._sent_through is None else self._sent_through

    def _forget_sent(self) -> bool:
        """Retry an owed delete; whether none is owed any more."""
        if self._sent_through is None:
            return True
        try:
            self._db.execute("DELETE FROM outbox WHERE seq <= ?", (self._sent_through,))
        except sqlite3.Error:
            return False
        self._sent_through = None
        return True

    def _count_dropped(self, count: int) -> None:
        self.dropped += count
        self._dropped_unlogged += count
        now = time.monotonic()
        if now - self._full_logged_at >= FULL_LOG_SECONDS:
            log.warning("event_outbox_full", extra={
                "dropped": self._dropped_unlogged, "dropped_total": self.dropped, "max_events": self.max_events,
                "path": str(self.path), "note": "the oldest events waiting for Redis were dropped for new ones"})
            self._full_logged_at, self._dropped_unlogged = now, 0

    def adopt(self) -> int:
        """Move the events of files no live process holds (dead or stopped workers) ahead of this
        outbox's own, then delete those files; how many events were taken."""
        if self.path is None or self.closed:
            return 0
        with self._lock:
            if not self._forget_sent():  # adopted rows go below ours: never among rows marked sent
                return 0
            try:
                return self._adopt()
            except (sqlite3.Error, OSError) as exc:  # a full disk, a file gone meanwhile: next round
                self._rollback()
                log.warning("event_outbox_adopt_failed", extra={"path": str(self.path), "error": str(exc)[:300]})
                return 0

    def _adopt(self) -> int:
        assert self.folder is not None and self.path is not None
        self._adopted_at = time.monotonic()
        own = self.path.with_suffix(".lock")
        sweep_hidden(self.folder)
        held: list[tuple[int, Path]] = []
        rows: list[str] = []
        try:
            for lock_path in sorted(self.folder.glob("*.lock"), key=mtime):
                if lock_path == own:
                    continue
                fd = try_lock(lock_path)
                if fd is None:
                    continue
                held.append((fd, lock_path))
                rows += read_orphan(lock_path.with_suffix(".db"))
            if rows:
                self._db.execute("BEGIN IMMEDIATE")
                first = self._db.execute("SELECT coalesce(min(seq), 1) FROM outbox").fetchone()[0]
                self._db.executemany("INSERT INTO outbox (seq, fields) VALUES (?, ?)",
                                     [(first - len(rows) + i, r) for i, r in enumerate(rows)])
                over = self._trim(self._stored + len(rows))
                self._db.execute("COMMIT")
                self._stored += len(rows) - over
                log.info("event_outbox_adopted", extra={"events": len(rows), "files": len(held),
                                                        "path": str(self.path)})
                if over:
                    self._count_dropped(over)
            for _, lock_path in held:  # ours are committed first: a crash here sends them twice, never loses them
                db_path = lock_path.with_suffix(".db")
                if db_path.exists():
                    remove_db(db_path)
                lock_path.unlink(missing_ok=True)
        finally:
            for fd, _ in held:
                os.close(fd)
        return len(rows)

    # -- out -----------------------------------------------------------------------------------
    def flush(self, client: redis.Redis, now: float | None = None) -> int:
        """Send the oldest waiting events in order, one pipeline per `SEND_BATCH`, deleting them
        once Redis has answered; how many were sent. Never raises for Redis nor for its file: it
        backs off. While the file could not be opened, tries it again every `REOPEN_SECONDS`."""
        now = time.monotonic() if now is None else now
        if self.closed:
            return 0
        if self.folder is not None and self.path is None and now >= self._reopen_at:
            with self._lock:
                opened = self._open_later(now)
            if opened:
                self.adopt()
        elif self.path is not None and now - self._adopted_at >= ADOPT_SECONDS:
            self.adopt()
        if not (self._stored or self._memory) or now < self.retry_at:
            return 0
        sent = 0
        started = time.perf_counter()
        with self._lock:
            self._forget_sent()
            while self._stored or self._memory:
                from_disk = bool(self._stored)
                if from_disk:
                    try:
                        rows = self._db.execute("SELECT seq, fields FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                                                (self._floor(), SEND_BATCH)).fetchall()
                    except sqlite3.Error as exc:  # memory waits too: it is newer than the file
                        self._unreadable(now, exc)
                        return sent
                    if self._read_failing:
                        log.info("event_outbox_readable", extra={"path": str(self.path), "pending": self.pending})
                        self._read_failing = False
                    if not rows:  # miscounted: nothing left above the floor
                        self._stored = 0
                        continue
                else:
                    rows = list(enumerate(list(self._memory)[:SEND_BATCH]))
                pipe = client.pipeline(transaction=False)
                for _, fields in rows:
                    pipe.xadd(self.stream, json.loads(fields), maxlen=self.maxlen, approximate=True)
                try:
                    pipe.execute()
                except redis.RedisError as exc:
                    self._wait(now, exc)
                    return sent
                if from_disk:
                    try:
                        self._db.execute("DELETE FROM outbox WHERE seq <= ?", (rows[-1][0],))
                    except sqlite3.Error as exc:  # sent all the same: skip them until a delete works
                        if self._sent_through is None:
                            log.error("event_outbox_delete_failed", extra={"path": str(self.path),
                                                                          "error": str(exc)[:300]})
                        self._sent_through = rows[-1][0]
                    self._stored -= len(rows)
                else:
                    for _ in rows:
                        self._memory.popleft()
                sent += len(rows)
                if time.perf_counter() - started > FLUSH_BUDGET:
                    break
            self._backoff, self.retry_at = FIRST_RETRY, 0.0
            if self._outage_since is not None:
                self._outage_sent += sent
                if not self.pending:
                    log.info("event_outbox_drained", extra={"sent": self._outage_sent, "dropped": self.dropped,
                                                            "waited_s": round(now - self._outage_since, 1)})
                    self._outage_since = None
        return sent

    def _wait(self, now: float, exc: redis.RedisError) -> None:
        if self._outage_since is None:
            self._outage_since, self._outage_sent = now, 0
            log.warning("event_outbox_waiting", extra={"pending": self.pending, "error": str(exc)[:300],
                                                        "retry_in": self._backoff, "path": str(self.path)})
        self.retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, MAX_RETRY)

    def _unreadable(self, now: float, exc: sqlite3.Error) -> None:
        """The file refused a read: tried again with the same backoff as Redis, said once."""
        if not self._read_failing:
            self._read_failing = True
            log.error("event_outbox_read_failed", extra={"path": str(self.path), "pending": self.pending,
                                                         "error": str(exc)[:300], "retry_in": self._backoff})
        self.retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, MAX_RETRY)

    def _open_later(self, now: float) -> bool:
        """Under the lock, while the file could not be opened: try again; once it opens, what
        the in-memory database (then memory) holds moves into it, in order, in one transaction."""
        if self.folder is None or self.path is not None:  # opened by another thread meanwhile
            return False
        self._reopen_at = now + REOPEN_SECONDS
        try:
            fd, path, db = open_file(self.folder)
        except (OSError, sqlite3.Error):
            return False  # said once, when the outbox was made
        try:
            kept = [r[0] for r in self._db.execute("SELECT fields FROM outbox WHERE seq > ? ORDER BY seq",
                                                   (self._floor(),))] + list(self._memory)
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO outbox (fields) VALUES (?)", [(r,) for r in kept])
            db.execute("COMMIT")
        except sqlite3.Error:
            let_go(fd, path, db)
            return False
        self._db.close()
        self._db, self._lock_fd, self.path = db, fd, path
        self._stored, self._sent_through = len(kept), None
        self._memory.clear()
        log.info("event_outbox_opened", extra={"path": str(path), "events": len(kept)})
        return True

    def peek(self, limit: int | None = None) -> list[Event]:
        """The waiting events, oldest first (for tools and tests)."""
        with self._lock:
            rows = [r[0] for r in self._db.execute("SELECT fields FROM outbox WHERE seq > ? ORDER BY seq",
                                                   (self._floor(),))] + list(self._memory)
        return [Event.from_fields(json.loads(r)) for r in rows[:limit]]

    def close(self) -> None:
        """Let go of the file: deleted when empty, else left (locked no more) for the next outbox."""
        with self._lock:
            if self.closed:
                return
            if self.folder is not None and self.path is None:
                self._open_later(time.monotonic())  # one last try: a file outlives the process
            self._store([], force=True)  # the same for what the file refused so far
            self.closed = True
            lost = len(self._memory) + (self._stored if self.folder is not None and self.path is None else 0)
            if lost:
                log.error("event_outbox_lost", extra={"events": lost, "path": str(self.path or self.folder),
                                                      "note": "events the disk could not take, Redis never took"})
            self._memory.clear()
            empty = not self._stored
            self._db.close()
            if self.path is not None and self._lock_fd is not None:
                if empty:
                    remove_db(self.path)
                    self.path.with_suffix(".lock").unlink(missing_ok=True)
                else:
                    log.info("event_outbox_left", extra={"events": self._stored, "path": str(self.path)})
                os.close(self._lock_fd)
                self._lock_fd = None
