"""Alembic environment: the engine comes from `registry.migrate`, the schema from the scripts.

The scripts in `versions/` create every table themselves (the alert engine's too), so an
upgrade needs no table class: this file imports none, and migrating from a worker no longer
loads the alert engine's modules. `target_metadata` is whatever the running process has
registered on `Base`; only a comparison of the models with the schema reads it, and that
caller imports the tables it compares (tests/test_migrations.py imports them all).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

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
