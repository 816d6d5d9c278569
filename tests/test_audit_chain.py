"""Acceptance 6 of issue 6: the audit log is a hash chain; `lookout audit verify` passes on an
untouched log and names the first row that was edited or deleted, on both databases."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.cli import main
from api.services import Services
from config.database import make_engine, make_session_factory
from registry import audit
from registry.migrate import upgrade
from tests.conftest import SECRET, Tree, camera_body


@pytest.fixture
def verify(services: Services, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """`verify()` → (exit code, what `lookout audit verify` printed) for the test database."""
    monkeypatch.setenv("LOOKOUT_DATABASE_URL", services.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("LOOKOUT_SECRET_KEY", SECRET)
    monkeypatch.setenv("LOOKOUT_DATA_DIR", str(services.settings.data_dir))

    def run() -> tuple[int, str]:
        code = main(["audit", "verify"])
        return code, capsys.readouterr().out

    return run


def _writes(client: TestClient, tree: Tree, login, count: int = 6) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    for i in range(count):
        response = client.post("/api/v1/cameras", json=camera_body(tree.village_a1, f"cam{i}"), headers=admin)
        assert response.status_code == 201, response.text
        client.patch(f"/api/v1/cameras/{response.json()['id']}", json={"address": f"路{i}号"}, headers=admin)


def test_an_untouched_log_verifies(client: TestClient, tree: Tree, login, verify) -> None:  # type: ignore[no-untyped-def]
    _writes(client, tree, login)
    code, out = verify()
    assert code == 0, out
    assert "intact: 12 rows" in out


def test_an_edited_row_is_named(client: TestClient, tree: Tree, login, verify, services: Services) -> None:  # type: ignore[no-untyped-def]
    _writes(client, tree, login)
    with services.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'user:nobody' WHERE id = 5"))
    code, out = verify()
    assert code == 1
    assert "broken at row 5" in out and "changed" in out


def test_an_edited_snapshot_is_named_even_with_its_hash_recomputed_alone(
        client: TestClient, tree: Tree, login, verify, services: Services) -> None:  # type: ignore[no-untyped-def]
    _writes(client, tree, login)
    with services.sessions() as session:
        row = dict(session.execute(text("SELECT * FROM audit_log WHERE id = 7")).mappings().one())
    forged = audit.jsonable({"address": "forged"})
    with services.sessions() as session:  # rewrite row 7 and its own hash, but not the rows after it
        entry = session.get(audit.AuditEntry, 7)
        assert entry is not None
        values = {c: getattr(entry, c) for c in audit.CHAINED} | {"after": forged}
        entry.after = forged
        entry.row_hash = audit.row_digest(row["prev_hash"], values)
        session.commit()
    code, out = verify()
    assert code == 1
    assert "broken at row 7" in out and "rewritten" in out


@pytest.mark.parametrize("victim", [4, 12])
def test_a_deleted_row_is_named(client: TestClient, tree: Tree, login, verify, services: Services,  # type: ignore[no-untyped-def]
                                victim: int) -> None:
    _writes(client, tree, login)
    with services.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": victim})
    code, out = verify()
    assert code == 1
    assert f"broken at row {victim}" in out and "missing" in out


def test_concurrent_writers_keep_one_chain(services: Services, tree: Tree, verify) -> None:  # type: ignore[no-untyped-def]
    """The API, the import, workers and the alert engine all append at once."""
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                with services.sessions() as session:
                    audit.record(session, f"writer{n}", "test.append", "unit", i, tree.county.id, None, {"i": i})
                    session.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    code, out = verify()
    assert code == 0, out
    assert "150 rows" in out


def test_an_old_log_is_chained_by_the_upgrade(tmp_path: Path) -> None:
    """A database written before the chain (ids with gaps, as sequences leave) verifies after it."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0004")
    with engine.begin() as conn:
        for row_id in (1, 2, 5, 9):
            conn.execute(text("INSERT INTO audit_log (id, at, actor, action, target_type, target_id, unit_id, after) "
                              "VALUES (:id, '2026-11-01 08:00:00.000000', 'cli', 'unit.create', 'unit', :id, :id, "
                              "'{\"name\": \"县\"}')"), {"id": row_id})
    upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions() as session:
        report = audit.verify_chain(session)
        assert report.intact, report.reason
        assert (report.rows, report.head_id) == (4, 4)
        audit.record(session, "cli", "unit.create", "unit", 10, 10)
        session.commit()
        assert audit.verify_chain(session).head_id == 5
    engine.dispose()
