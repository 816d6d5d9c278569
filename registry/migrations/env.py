"""Alembic environment: the engine comes from `registry.migrate`, the tables from our modules."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

import alerts.counters  # noqa: F401 - registers counters
import alerts.delivery  # noqa: F401 - registers deliveries
import alerts.model  # noqa: F401 - registers alerts, alert_events, alert_changes
import alerts.subscriptions  # noqa: F401 - registers subscriptions
import registry.audit  # noqa: F401 - registers audit_log
import registry.camera_imports  # noqa: F401 - registers camera_imports, camera_import_rows
import registry.cameras  # noqa: F401 - registers cameras, camera_tags
import registry.units  # noqa: F401 - registers units
import registry.users  # noqa: F401 - registers users, api_tokens
from config.database import Base

MIGRATION_LOCK = 0x4C4F4F4B  # "LOOK": one migrating process at a time on PostgreSQL

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    if connection.dialect.name == "postgresql":  # API and workers may all start at once
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()
