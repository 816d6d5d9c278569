"""The schema comes from Alembic migrations, matches the models, and survives racing starts."""

from __future__ import annotations

import importlib
import multiprocessing
import pkgutil
import uuid
from pathlib import Path

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import alerts
import registry
from config.database import Base, make_engine
from registry.migrate import MIGRATIONS, alembic_config, upgrade
from tests.conftest import PG_ADMIN

SEARCH_TABLES = {"camera_search", "camera_search_paused"}  # FTS5 side tables of migration 0002


def register_every_table() -> None:
    """Import every module of the packages that hold tables (the registry and the alert engine),
    so that `Base.metadata` is the whole schema: the migrations' env.py imports no table (a
    worker that migrates must not load the alert engine), and a table nobody imported would
    show up below as one to drop."""
    for package in (registry, alerts):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    register_every_table()
    engine = make_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    def concerns_search(op: tuple) -> bool:  # type: ignore[type-arg]
        text = repr(op)
        return any(name in text for name in SEARCH_TABLES) or "_trgm" in text
    assert [op for op in diff if not concerns_search(op)] == []


def _migrate(url: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()


def test_api_and_workers_starting_together_migrate_once(pg_url: str) -> None:
    name = f"lookout_race_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = pg_url.rsplit("/", 1)[0] + "/" + name
    try:
        processes = [multiprocessing.get_context("spawn").Process(target=_migrate, args=(url,)) for _ in range(4)]
        for p in processes:
            p.start()
        for p in processes:
            p.join(120)
        assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_sqlite_file_upgrades_from_nothing(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    upgrade(engine)
    upgrade(engine)  # idempotent
    with engine.connect() as conn:
        head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
        assert head == f"{len(list(MIGRATIONS.glob('versions/0*.py'))):04d}"  # the newest file, numbered
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
