"""Waiting for Redis and the database at start, shared by `serve`, `worker` and `alert-engine`.

A process that starts before its Redis or its database (a machine booting, a restart of
PostgreSQL, a Redis being moved) used to die on its first command, be started again by its
supervisor and die again: a crash loop with a traceback per try. Instead each entry point
waits here until the dependency answers, and says so in ONE structured line per dependency
per retry interval (`waiting_for_dependency`: which dependency, its URL without the password,
the error text, when it tries again), then `dependency_ready` once it answers.

`states` (when given) holds what each dependency last said (`ok`, or `waiting: <error>`), so
that `serve` can answer /healthz with it while it waits. `wait_for_dependencies` is the whole
start of a worker and of an alert engine: the database, its migrations, then Redis.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, MutableMapping

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger("lookout.dependencies")
REDIS, DATABASE = "redis", "database"
_USERINFO = re.compile(r"(?<=://)([^:/@\s]*):([^@/\s]*)@")  # user:password@ of any URL


def safe_url(url: str) -> str:
    """`url` with its password (if any) as `***`: what a log line or /healthz may show."""
    return _USERINFO.sub(r"\1:***@", url)


def describe(exc: BaseException) -> str:
    """`Type: first line of the message` of a failed connection, without any password, short.
    For a SQLAlchemy error, the driver's own error (the wrapper adds SQL and a docs link)."""
    inner = getattr(exc, "orig", None) or exc
    message = next((line.strip() for line in str(inner).splitlines() if line.strip()), "")
    return safe_url(f"{type(inner).__name__}: {message}" if message else type(inner).__name__)[:300]


def _wait(dependency: str, url: str, check: Callable[[], object], errors: tuple[type[BaseException], ...],
          stop_event: threading.Event | None, interval: float, command: str,
          states: MutableMapping[str, str] | None) -> bool:
    """Call `check` until it passes (True) or `stop_event` is set (False), one line per try."""
    stop = stop_event or threading.Event()
    started, tries = time.monotonic(), 0
    while not stop.is_set():
        try:
            check()
        except errors as exc:
            tries += 1
            error = describe(exc)
            if states is not None:
                states[dependency] = f"waiting: {error}"
            log.warning("waiting_for_dependency", extra={
                "dependency": dependency, "url": safe_url(url), "error": error, "retry_in": interval,
                "command": command, "pid": os.getpid(), "tries": tries})
            stop.wait(interval)
            continue
        if states is not None:
            states[dependency] = "ok"
        if tries:
            log.info("dependency_ready", extra={"dependency": dependency, "url": safe_url(url), "command": command,
                                                "pid": os.getpid(), "waited_seconds": round(time.monotonic() - started, 1)})
        return True
    return False


def wait_for_redis(url: str, stop_event: threading.Event | None = None, interval: float = 2.0, *,
                   command: str, states: MutableMapping[str, str] | None = None) -> bool:
    """Block until the Redis at `url` answers PING (True), or `stop_event` is set (False).
    Any Redis error counts as not there yet: refused, loading its AOF, a wrong password (the
    line says which, and the operator can fix it without a crash loop meanwhile)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5, retry=Retry(NoBackoff(), 0))
    try:
        return _wait(REDIS, url, client.ping, (redis.RedisError, OSError), stop_event, interval, command, states)
    finally:
        client.close()


def wait_for_database(engine: Engine, stop_event: threading.Event | None = None, interval: float = 2.0, *,
                      command: str, states: MutableMapping[str, str] | None = None) -> bool:
    """Block until the database of `engine` runs `SELECT 1` (True), or `stop_event` is set (False)."""

    def check() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    url = engine.url.render_as_string(hide_password=True)
    return _wait(DATABASE, url, check, (DBAPIError, OSError), stop_event, interval, command, states)


def wait_for_dependencies(engine: Engine, redis_url: str, stop_event: threading.Event, interval: float, *,
                          command: str, migrate: Callable[[Engine], object]) -> bool:
    """Wait for the database, bring its schema up to date (`migrate`: `registry.migrate.upgrade`,
    passed in since config uses nothing above it), then wait for Redis; False when stopped first.
    Nothing here dies of a dependency that is not there yet: a crash loop under `serve`'s
    supervisor would log a traceback per try."""
    while True:
        if not wait_for_database(engine, stop_event, interval, command=command):
            return False
        try:
            migrate(engine)
            break
        except DBAPIError as exc:  # it went away again between the check and the migration
            log.warning("database_lost_during_start", extra={"error": describe(exc), "retry_in": interval})
            stop_event.wait(interval)
    return wait_for_redis(redis_url, stop_event, interval, command=command)


def stop_on_signals() -> threading.Event:
    """An event that SIGTERM and SIGINT set: a process still waiting for its dependencies ends
    quietly (no KeyboardInterrupt traceback). Set by a thread, not inside the signal handler
    (`config.processes.on_stop_signals` says why)."""
    from config.processes import on_stop_signals

    stop = threading.Event()
    on_stop_signals(stop.set)
    return stop
