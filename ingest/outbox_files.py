"""The files of the worker's event outbox (`ingest.outbox`): one SQLite file per worker process,
owned through an exclusive `flock` on its `.lock` twin (a separate file, because closing any
other descriptor of a SQLite database drops SQLite's own POSIX locks on it), and what a live
outbox does with the files of dead processes: read them in order, set aside what it cannot read.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
import uuid
from pathlib import Path

from config.private_files import open_private, private_dir, private_file

log = logging.getLogger("lookout.outbox")
#: a `.lock.tmp` younger than this may be another process's, between its create and its flock
TMP_STALE_SECONDS = 60.0
CLAIM_TRIES = 5
SCHEMA = "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, fields TEXT NOT NULL)"


def connect(target: str, uri: bool = False) -> sqlite3.Connection:
    db = sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False, timeout=5)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def try_lock(path: Path) -> int | None:
    """A descriptor holding the exclusive flock of `path`, or None when a live process holds it
    (or it vanished: deleted by whoever held it, so the lock taken would be on a dead inode)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held, now = os.fstat(fd), os.stat(path, follow_symlinks=False)
        if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def remove_db(db_path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)


def memory_db() -> sqlite3.Connection:
    db = connect(":memory:")
    db.execute(SCHEMA)
    return db


def let_go(fd: int, db_path: Path, db: sqlite3.Connection | None) -> None:
    """Undo a file this process claimed but could not use: nothing half-made is left behind."""
    if db is not None:
        db.close()
    try:
        remove_db(db_path)
        db_path.with_suffix(".lock").unlink(missing_ok=True)
    finally:
        os.close(fd)


def open_file(folder: Path) -> tuple[int, Path, sqlite3.Connection]:
    """This process's own new file in `folder`, ready; raises (leaving nothing) when the
    disk cannot take it."""
    private_dir(folder)
    fd, path = claim_file(folder)
    db = None
    try:
        db = connect(str(private_file(path)))
        db.execute(SCHEMA)
    except BaseException:
        let_go(fd, path, db)
        raise
    return fd, path, db

def claim_file(folder: Path) -> tuple[int, Path]:
    """A new file name of this process, locked before anyone can see it: the lock file is
    made under a hidden name, locked, then renamed into place. Tried again under a new name
    when the hidden file went meanwhile (an outbox of an older version took it for a dead
    process's)."""
    for attempt in range(CLAIM_TRIES):
        name = f"events-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        hidden = folder / f".{name}.lock.tmp"
        fd = open_private(hidden, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(hidden, folder / f"{name}.lock")
            return fd, folder / f"{name}.db"
        except OSError as exc:
            os.close(fd)
            if not isinstance(exc, (FileNotFoundError, BlockingIOError)):  # not a rival's doing
                hidden.unlink(missing_ok=True)
                raise
            if attempt == CLAIM_TRIES - 1:
                raise
    raise AssertionError("unreachable")


def sweep_hidden(folder: Path) -> None:
    """Remove the hidden lock files of processes that died while naming their file."""
    for hidden in folder.glob(".*.lock.tmp"):
        if time.time() - mtime(hidden) < TMP_STALE_SECONDS:
            continue  # or one naming it right now, not locked yet: its rename must find it
        fd = try_lock(hidden)
        if fd is not None:
            hidden.unlink(missing_ok=True)
            os.close(fd)


def read_orphan(db_path: Path) -> list[str]:
    """The events of a dead process's file, in order; an unreadable file is set aside."""
    if not db_path.exists():
        return []
    try:
        db = connect(f"file:{db_path}?mode=rw", uri=True)
        try:
            return [r[0] for r in db.execute("SELECT fields FROM outbox ORDER BY seq")]
        finally:
            db.close()
    except sqlite3.Error as exc:  # not ours to judge: set aside for a person, never deleted
        log.error("event_outbox_unreadable", extra={"path": str(db_path), "error": str(exc)[:300]})
        db_path.rename(db_path.with_name(db_path.name + ".unreadable"))
        return []
