"""The unit tree, sign-in and tokens."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from api.services import Services
from config.database import utcnow
from registry.users import ApiToken
from tests.conftest import PASSWORD, Tree, camera_body


def test_unit_tree_create_move_and_guarded_delete(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    bad = client.post("/api/v1/units", json={"name": "x", "code": "3301", "parent_id": tree.town_a.id}, headers=admin)
    assert bad.status_code == 422 and "code" in bad.text
    dup = client.post("/api/v1/units", json={"name": "x", "code": "330199001001", "parent_id": tree.town_a.id},
                      headers=admin)
    assert dup.status_code == 409
    hamlet = client.post("/api/v1/units", json={"name": "小组", "code": "330199001011", "parent_id": tree.village_a1.id},
                         headers=admin).json()
    assert hamlet["depth"] == 3  # any depth is allowed
    assert client.post("/api/v1/cameras", json=camera_body(tree.village_a1, "c"), headers=admin).status_code == 201
    # a unit with children or cameras cannot be deleted
    has_children = client.delete(f"/api/v1/units/{tree.village_a1.id}", headers=admin)
    assert has_children.status_code == 409 and "child" in has_children.json()["detail"]
    assert client.delete(f"/api/v1/units/{hamlet['id']}", headers=admin).status_code == 204
    has_cameras = client.delete(f"/api/v1/units/{tree.village_a1.id}", headers=admin)
    assert has_cameras.status_code == 409 and "cameras" in has_cameras.json()["detail"]
    # moving village_a1 to town_b moves its cameras into town_b's scope
    moved = client.patch(f"/api/v1/units/{tree.village_a1.id}", json={"parent_id": tree.town_b.id}, headers=admin)
    assert moved.status_code == 200 and moved.json()["parent_id"] == tree.town_b.id
    op_b = login("operator", tree.town_b)
    assert [c["name"] for c in client.get("/api/v1/cameras", headers=op_b).json()["items"]] == ["c"]
    under_itself = client.patch(f"/api/v1/units/{tree.town_b.id}", json={"parent_id": tree.village_a1.id}, headers=admin)
    assert under_itself.status_code == 409
    assert client.delete(f"/api/v1/units/{tree.village_a2.id}", headers=admin).status_code == 204


def test_sign_in_and_token_rules(client: TestClient, services: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    login("operator", tree.town_a, username="zhang")
    wrong = client.post("/api/v1/auth/token", json={"username": "zhang", "password": "nope"})
    assert wrong.status_code == 401
    ok = client.post("/api/v1/auth/token", json={"username": "zhang", "password": PASSWORD})
    assert ok.status_code == 200
    headers = {"Authorization": f"Bearer {ok.json()['access_token']}"}
    me = client.get("/api/v1/users/me", headers=headers).json()
    assert me["username"] == "zhang" and me["role"] == "operator"
    assert client.get("/api/v1/cameras").status_code == 401
    assert client.get("/api/v1/cameras", headers={"Authorization": "Bearer lk_forged"}).status_code == 401
    with services.sessions() as session:
        session.execute(update(ApiToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    expired = client.get("/api/v1/users/me", headers=headers)
    assert expired.status_code == 401 and "expired" in expired.text


def test_disabling_a_user_revokes_their_tokens(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    client.post("/api/v1/users", json={"username": "li", "password": "long enough now", "role": "technician",
                                       "unit_id": tree.town_a.id}, headers=admin)
    token = client.post("/api/v1/auth/token", json={"username": "li", "password": "long enough now"}).json()["access_token"]
    user_id = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}).json()["id"]
    assert client.patch(f"/api/v1/users/{user_id}", json={"active": False}, headers=admin).status_code == 200
    assert client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_healthz_and_metrics(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    client.post("/api/v1/cameras", json=camera_body(tree.village_a1, "m", network="huiyan"), headers=admin)
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json() | {"disk": "ok"} == {
        "status": "ok", "database": "ok", "redis": "ok", "disk": "ok"}
    assert health.json()["disk"].startswith("ok: ")  # "ok: 41.0% free" (tests/test_disk_full.py: the rest)
    metrics = client.get("/metrics").text
    assert 'lookout_cameras{network="huiyan",status="unknown"} 1.0' in metrics
    assert 'lookout_http_requests_total{method="POST",route="/api/v1/cameras",status="201"} 1.0' in metrics
    assert client.get("/docs").status_code == 200
    assert "/api/v1/cameras" in client.get("/openapi.json").json()["paths"]
