"""Fixtures that start real servers: a private redis-server, a private PostgreSQL database.

Storage and API tests take `services` (or `client`) and so run twice, once on SQLite and
once on PostgreSQL (`LOOKOUT_TEST_PG`; else the machine's server on 127.0.0.1:5432 when it
lets `postgres` in; else a private cluster started for the session, so that a fresh clone
needs no server set up).
"""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import delete, insert

from api.app import create_app
from api.services import Services, build_services
from config.database import Base, make_engine
from config.logging import JsonFormatter
from config.redis_server import find_redis_server
from config.settings import Settings
from registry.audit import GENESIS, AuditHead
from registry.migrate import upgrade
from registry.units import Unit, create_unit
from registry.users import Role, User, hash_password, issue_token

SECRET = Fernet.generate_key().decode()
PASSWORD = "correct horse battery"
_PASSWORD_HASH = hash_password(PASSWORD)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


MACHINE_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _postgres_admin_url() -> tuple[str, bool]:
    """The admin URL of the PostgreSQL server the tests use, and whether it is a private cluster
    that this session must start (`private_postgres`): decided once, at import, because test
    modules import PG_ADMIN."""
    if os.environ.get("LOOKOUT_TEST_PG"):
        return os.environ["LOOKOUT_TEST_PG"], False
    try:
        psycopg.connect(MACHINE_PG, connect_timeout=2).close()
        return MACHINE_PG, False
    except psycopg.OperationalError:
        return f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", True


PG_ADMIN, PG_IS_PRIVATE = _postgres_admin_url()


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A private redis-server on a free port of this thread's network namespace, and its URL."""
    port = free_port()
    process = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        process.kill()
        raise RuntimeError("private redis-server did not start")
    client.close()
    return process, f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server for this test session, on a free port."""
    process, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    process.terminate()
    process.wait(10)


def pytest_report_header() -> str:
    where = "a private cluster for this session (none answered on 127.0.0.1:5432)" if PG_IS_PRIVATE else "the server"
    return f"postgresql: {where}, {PG_ADMIN}"


@pytest.fixture(scope="session", autouse=PG_IS_PRIVATE)
def private_postgres() -> Iterator[None]:
    """The private cluster PG_ADMIN names when no server answered: started before the first test
    (any test may use PG_ADMIN, not only through `pg_url`) and removed after the last. Nothing
    when PG_ADMIN is the machine's server or LOOKOUT_TEST_PG's."""
    if not PG_IS_PRIVATE:
        yield
        return
    from tests.private_pg import PrivatePostgres  # it imports this module

    port = urllib.parse.urlsplit(PG_ADMIN).port
    server = PrivatePostgres(port)
    try:
        server.start()
        yield
    finally:
        server.remove()


@pytest.fixture(scope="session")
def pg_url(private_postgres: None) -> Iterator[str]:
    """A fresh database on the PostgreSQL server, dropped at the end."""
    name = f"lookout_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        raise RuntimeError(f"PostgreSQL is needed for the tests ({PG_ADMIN}): {exc}") from exc
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'lookout.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def make_settings(database_url: str, redis_url: str | None, data_dir: Path) -> Settings:
    return Settings(database_url=database_url, redis_url=redis_url, data_dir=data_dir, secret_key=SECRET)


@pytest.fixture
def services(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[Services]:
    svc = build_services(make_settings(database_url, redis_url, tmp_path))
    with svc.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))
        conn.execute(insert(AuditHead), {"id": 1, "last_id": 0, "last_hash": GENESIS})  # a new, empty chain
    assert svc.redis is not None
    svc.redis.flushdb()
    yield svc
    svc.close()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services)) as test_client:
        yield test_client


@dataclass
class Tree:
    """county ─┬ town_a ─┬ village_a1
               │         └ village_a2
               └ town_b ── village_b1"""

    county: Unit
    town_a: Unit
    town_b: Unit
    village_a1: Unit
    village_a2: Unit
    village_b1: Unit


@pytest.fixture
def tree(services: Services) -> Tree:
    with services.sessions() as session:
        county = create_unit(session, name="示范县", code="330199000000", parent_id=None, scope=None)
        town_a = create_unit(session, name="城关镇", code="330199001000", parent_id=county.id, scope=None)
        town_b = create_unit(session, name="河口镇", code="330199002000", parent_id=county.id, scope=None)
        a1 = create_unit(session, name="东门村", code="330199001001", parent_id=town_a.id, scope=None)
        a2 = create_unit(session, name="西街村", code="330199001002", parent_id=town_a.id, scope=None)
        b1 = create_unit(session, name="河口村", code="330199002001", parent_id=town_b.id, scope=None)
        session.commit()
        return Tree(county, town_a, town_b, a1, a2, b1)


def bearer_headers(services: Services, role: str, unit: Unit, username: str) -> dict[str, str]:
    """Headers with a bearer token for a new user of that role and unit."""
    from datetime import timedelta

    with services.sessions() as session:
        user = User(username=username, role=Role(role).value, unit_id=unit.id, password_hash=_PASSWORD_HASH)
        session.add(user)
        session.flush()
        token, _ = issue_token(session, user, timedelta(hours=1))
        session.commit()
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def login(services: Services):  # type: ignore[no-untyped-def]
    """`login(role, unit)` → headers with a bearer token for a new user of that role and unit."""
    counter = iter(range(1_000_000))

    def make(role: str, unit: Unit, username: str | None = None) -> dict[str, str]:
        return bearer_headers(services, role, unit, username or f"{role}{next(counter)}")

    return make


@pytest.fixture
def sqlite_services(redis_url: str, tmp_path: Path) -> Iterator[Services]:
    """A private SQLite registry with the session's Redis, for tests of the ingest side."""
    services = build_services(make_settings(f"sqlite:///{tmp_path / 'registry.db'}", redis_url, tmp_path))
    upgrade(services.engine)
    assert services.redis is not None
    services.redis.flushdb()
    yield services
    services.close()


def children_of(pid: int) -> dict[int, str]:
    """The live child processes of `pid`: pid → command line."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return found


def wait_for(condition: Callable[[], bool], timeout: float) -> float:
    """Poll `condition` until it holds; the seconds it took. Fails after `timeout`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - start


def camera_body(unit: Unit, name: str = "cam", **extra: object) -> dict[str, object]:
    body: dict[str, object] = {"name": name, "network": "xueliang", "unit_id": unit.id}
    body.update(extra)
    return body


MODEL_CACHE = Path(__file__).resolve().parents[1] / "models" / "cache"


@pytest.fixture(scope="session")
def model_files() -> dict[str, Path]:
    """The ONNX files of models/, built by `lookout models build`'s code on first use (a few
    minutes on a fresh clone: it makes the export environment), then reused."""
    from models.build import build
    from models.manifest import manifests

    return build(MODEL_CACHE, manifests())


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line of the block (DEBUG and up), as Lookout's JSON formatter writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
