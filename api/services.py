"""What one API process holds: settings, database sessions, Redis, the camera registry, the
alert policy."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from alerts.policy import AlertPolicy
from config.database import make_engine, make_session_factory
from config.redis_server import connect
from config.settings import Settings
from registry.camera_store import CameraRegistry
from registry.credentials import CredentialCipher, secret_key
from registry.registry_feed import RegistryFeed

log = logging.getLogger("lookout.services")


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: redis.Redis | None
    registry: CameraRegistry
    alert_policy: AlertPolicy

    def close(self) -> None:
        if self.redis is not None:
            self.redis.close()
        self.engine.dispose()


def build_services(settings: Settings, redis_url: str | None = None) -> Services:
    """Connect to what `settings` names; `redis_url` is the embedded server's, when one runs."""
    engine = make_engine(settings.resolved_database_url)
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:  # refresh planner statistics that are stale or missing
            conn.exec_driver_sql("PRAGMA optimize=0x10002")
    url = redis_url or settings.redis_url
    client = connect(url) if url else None
    registry = CameraRegistry(
        cipher=CredentialCipher(secret_key(settings)),
        networks=settings.networks,
        feed=RegistryFeed(client, settings.registry_feed_maxlen),
    )
    return Services(settings, engine, make_session_factory(engine), client, registry, AlertPolicy(settings.alerts))


def open_services(settings: Settings, redis_url: str | None = None) -> Services:
    """`build_services` on a database brought up to date (migrations first)."""
    from registry.migrate import upgrade

    services = build_services(settings, redis_url)
    upgrade(services.engine)
    return services


def secure_stored_credentials(services: Services) -> None:
    """Bind credentials sealed by an older release to their camera's endpoints (and take any
    left inside stored URLs out), so that no worker sends them elsewhere. Idempotent."""
    from registry.camera_credentials import secure_stored_credentials as secure

    with services.sessions() as session:
        changed = secure(session, services.registry.cipher)
    if changed:
        log.info("stored_credentials_secured", extra={"cameras": changed})
