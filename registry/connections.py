"""What the worker and the alert engine do first: wait until the database (brought up to date)
and Redis both answer, one log line per try (`config.dependencies`), then connect."""

from __future__ import annotations

import threading

import redis
from sqlalchemy import Engine

from config.database import make_engine
from config.dependencies import wait_for_dependencies
from config.redis_server import connect, deployment_url
from config.settings import Settings


def connect_when_ready(settings: Settings, command: str, stop: threading.Event) -> tuple[Engine, redis.Redis] | None:
    """The migrated database's engine and a Redis client for the process `lookout <command>`;
    None when `stop` is set while still waiting."""
    url = deployment_url(settings.redis_url, settings.data_dir, f"lookout {command}")
    from registry.migrate import upgrade  # alembic logs as it loads: not for a start refused above

    engine = make_engine(settings.resolved_database_url)
    if not wait_for_dependencies(engine, url, stop, settings.dependency_retry_seconds, command=command,
                                 migrate=upgrade):
        engine.dispose()
        return None
    return engine, connect(url)
