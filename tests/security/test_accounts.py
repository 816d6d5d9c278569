"""Hole 17 of issue 13: accounts. Weak passwords, `Admin` beside `admin`, no logout, no way to
change one's own password, expired tokens kept forever. Each test is the attack (or the
careless act) of a named role, asserting the refusal and that nothing changed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError

from api.cli import main
from api.services import Services
from config.database import make_engine, utcnow
from registry.migrate import upgrade
from registry.users import ApiToken, User
from tests.conftest import PASSWORD, PG_ADMIN, Tree

STRONG = "amber kettle on the 9th floor"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _sign_in(client: TestClient, username: str, password: str) -> str:
    response = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _usernames(services: Services) -> list[str]:
    with services.sessions() as session:
        return sorted(session.scalars(select(User.username)))


# -- password policy -------------------------------------------------------------------------
@pytest.mark.parametrize("weak", ["12345678", "password", "123456789012", "qwertyuiop123", "Password1234",
                                  "zhangwei2024!", "short pw", "aaaaaaaaaaaaaaaa", "1212121212121212"])
def test_county_admin_cannot_give_a_new_user_a_weak_password(client: TestClient, services: Services, tree: Tree,
                                                            login, weak: str) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county, "chief")
    response = client.post("/api/v1/users", headers=admin, json={
        "username": "zhangwei", "password": weak, "role": "operator", "unit_id": tree.town_a.id})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "password"
    assert weak == "password" or weak not in response.text  # the refusal does not echo the password
    assert _usernames(services) == ["chief"]


def test_county_admin_cannot_reset_someone_to_a_weak_password(client: TestClient, services: Services, tree: Tree,
                                                             login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county, "chief")
    login("operator", tree.town_a, "zhang")
    with services.sessions() as session:
        zhang = session.scalar(select(User).where(User.username == "zhang"))
        assert zhang is not None
        zhang_id, before = zhang.id, zhang.password_hash
    refused = client.patch(f"/api/v1/users/{zhang_id}", headers=admin, json={"password": "password"})
    assert refused.status_code == 422 and refused.json()["field"] == "password"
    with services.sessions() as session:
        assert session.get_one(User, zhang_id).password_hash == before
    _sign_in(client, "zhang", PASSWORD)  # the old password still works


def test_the_cli_refuses_a_weak_password(services: Services, tree: Tree, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LOOKOUT_DATABASE_URL", services.settings.resolved_database_url)
    monkeypatch.setenv("LOOKOUT_DATA_DIR", str(services.settings.data_dir))
    code = main(["user", "add", "wang", "--role", "operator", "--unit", tree.town_a.code, "--password", "12345678"])
    assert code == 2 and "password" in capsys.readouterr().err
    code = main(["user", "add", "WANG.ops", "--role", "operator", "--unit", tree.town_a.code, "--password", STRONG])
    assert code == 0
    code = main(["user", "add", "wang.OPS", "--role", "admin", "--unit", tree.county.code, "--password", STRONG])
    assert code == 2 and "taken" in capsys.readouterr().err
    assert _usernames(services) == ["WANG.ops"]


# -- one name, whatever its case ------------------------------------------------------------
def test_county_admin_cannot_create_Admin_beside_admin(client: TestClient, services: Services, tree: Tree,  # noqa: N802
                                                     login) -> None:  # type: ignore[no-untyped-def]
    town_admin = login("admin", tree.town_a, "admin")
    for name in ("Admin", "ADMIN", "aDmIn"):
        response = client.post("/api/v1/users", headers=town_admin, json={
            "username": name, "password": STRONG, "role": "admin", "unit_id": tree.town_a.id})
        assert response.status_code == 409, response.text
        assert response.json()["field"] == "username"
    assert _usernames(services) == ["admin"]
    # and the database itself refuses it, whatever writes the row
    with services.sessions() as session, pytest.raises(IntegrityError):
        session.add(User(username="ADMIN", role="admin", unit_id=tree.town_a.id, password_hash="x"))
        session.commit()


def test_sign_in_ignores_the_case_of_the_username(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    login("operator", tree.town_a, "Zhang.Wei")
    token = _sign_in(client, "zhang.wei", PASSWORD)
    assert client.get("/api/v1/users/me", headers=_bearer(token)).json()["username"] == "Zhang.Wei"
    assert _sign_in(client, "ZHANG.WEI", PASSWORD)


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database at revision 0007 (before usernames were unique regardless of case)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    name = f"lookout_0007_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_migration_renames_later_accounts_that_clash_by_case(old_database: str) -> None:
    """Before 0008 an admin (or an impostor) could add `Admin` beside `admin`. The oldest keeps
    the name; later ones get a visible `-dup<id>` name and keep their password and tokens."""
    engine = make_engine(old_database)
    upgrade(engine, "0007")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO units (id, name, code, path, depth, created_at) "
                          "VALUES (1, 'county', '330199000000', '/1/', 0, :now)"), {"now": utcnow()})
        names = ["admin", "Admin", "ADMIN", "Admin-dup2", "zhang"]
        for user_id, name in enumerate(names, start=1):
            conn.execute(insert(User.__table__).values(
                id=user_id, username=name, password_hash=f"hash-{user_id}", role="admin", unit_id=1, active=True,
                created_at=utcnow()))
        conn.execute(insert(ApiToken.__table__).values(user_id=2, token_hash="a" * 64, expires_at=utcnow(),
                                                      created_at=utcnow()))
    upgrade(engine)
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT id, username FROM users")).all())
        hashes = dict(conn.execute(text("SELECT id, password_hash FROM users")).all())
        # id 4 already holds `Admin-dup2` (in a case of its own), so id 2 gets one more suffix
        assert rows == {1: "admin", 2: "Admin-dup2-1", 3: "ADMIN-dup3", 4: "Admin-dup2", 5: "zhang"}
        assert len({name.lower() for name in rows.values()}) == 5
        assert hashes == {i: f"hash-{i}" for i in range(1, 6)}
        assert conn.execute(text("SELECT user_id FROM api_tokens")).scalar() == 2
    with engine.begin() as conn, pytest.raises(IntegrityError):
        conn.execute(insert(User.__table__).values(username="ZHANG", password_hash="x", role="admin", unit_id=1,
                                                   active=True, created_at=utcnow()))
    engine.dispose()


# -- logout and one's own password ---------------------------------------------------------
def test_logout_revokes_the_calling_token_only(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    login("operator", tree.town_a, "zhang")
    desk, phone = _sign_in(client, "zhang", PASSWORD), _sign_in(client, "zhang", PASSWORD)
    assert client.post("/api/v1/auth/logout").status_code == 401
    assert client.post("/api/v1/auth/logout", headers=_bearer(desk)).status_code == 204
    assert client.get("/api/v1/users/me", headers=_bearer(desk)).status_code == 401
    assert client.post("/api/v1/auth/logout", headers=_bearer(desk)).status_code == 401  # not twice
    assert client.get("/api/v1/users/me", headers=_bearer(phone)).status_code == 200


def test_an_operator_changes_their_own_password_only_with_the_old_one(client: TestClient, services: Services,
                                                                     tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    login("operator", tree.town_a, "zhang")
    desk, stolen = _sign_in(client, "zhang", PASSWORD), _sign_in(client, "zhang", PASSWORD)
    url = "/api/v1/users/me/password"
    # someone at an unlocked console (the token, not the password) cannot take the account over
    wrong = client.post(url, headers=_bearer(stolen), json={"old_password": "guess guess guess", "new_password": STRONG})
    assert wrong.status_code == 403 and wrong.json()["field"] == "old_password"
    weak = client.post(url, headers=_bearer(desk), json={"old_password": PASSWORD, "new_password": "zhang2024zhang"})
    assert weak.status_code == 422 and weak.json()["field"] == "new_password"
    assert client.post(url, json={"old_password": PASSWORD, "new_password": STRONG}).status_code == 401
    _sign_in(client, "zhang", PASSWORD)  # nothing changed so far
    ok = client.post(url, headers=_bearer(desk), json={"old_password": PASSWORD, "new_password": STRONG})
    assert ok.status_code == 204, ok.text
    assert client.get("/api/v1/users/me", headers=_bearer(desk)).status_code == 200  # the caller stays signed in
    assert client.get("/api/v1/users/me", headers=_bearer(stolen)).status_code == 401  # every other token is gone
    assert client.post("/api/v1/auth/token", json={"username": "zhang", "password": PASSWORD}).status_code == 401
    _sign_in(client, "zhang", STRONG)
    entries = client.get("/api/v1/audit", headers=login("admin", tree.county, "chief"),
                         params={"action": "user.password_change"}).json()
    assert [e["actor"] for e in entries["items"]] == ["user:zhang"]
    assert PASSWORD not in str(entries) and STRONG not in str(entries)


def test_expired_tokens_do_not_pile_up(client: TestClient, services: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    login("operator", tree.town_a, "zhang")
    with services.sessions() as session:
        user_id = session.scalar(select(User.id).where(User.username == "zhang"))
        session.execute(insert(ApiToken), [
            {"user_id": user_id, "token_hash": uuid.uuid4().hex * 2, "expires_at": utcnow() - timedelta(minutes=n)}
            for n in range(1, 201)])
        session.commit()
    _sign_in(client, "zhang", PASSWORD)
    with services.sessions() as session:
        expired = session.scalar(select(func.count()).select_from(ApiToken).where(ApiToken.expires_at < utcnow()))
        live = session.scalar(select(func.count()).select_from(ApiToken).where(ApiToken.expires_at >= utcnow()))
    assert expired == 0 and live == 2  # the fixture's token and the new one
