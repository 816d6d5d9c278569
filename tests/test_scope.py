"""Every read and write stays inside the caller's unit subtree; roles limit who writes."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Tree, camera_body


def _cameras(client: TestClient, tree: Tree, login) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    cam_a = client.post("/api/v1/cameras", json=camera_body(tree.village_a1, "a"), headers=admin).json()
    cam_b = client.post("/api/v1/cameras", json=camera_body(tree.village_b1, "b"), headers=admin).json()
    return cam_a, cam_b


def test_township_operator_gets_404_or_403_on_every_route_of_another_township(
    client: TestClient, tree: Tree, login  # type: ignore[no-untyped-def]
) -> None:
    cam_a, cam_b = _cameras(client, tree, login)
    operator_a = login("operator", tree.town_a)
    b_unit, b_village = tree.town_b.id, tree.village_b1.id
    denied = [
        ("GET", f"/api/v1/cameras/{cam_b['id']}", None),
        ("PATCH", f"/api/v1/cameras/{cam_b['id']}", {"name": "x"}),
        ("DELETE", f"/api/v1/cameras/{cam_b['id']}", None),
        ("GET", f"/api/v1/cameras/{cam_b['id']}/stream", None),
        ("GET", f"/api/v1/cameras/{cam_b['id']}/ptz/presets", None),  # refused before any device is contacted
        ("POST", f"/api/v1/cameras/{cam_b['id']}/ptz/goto-preset", {"preset": "gate"}),
        ("POST", "/api/v1/cameras", camera_body(tree.village_b1, "x")),
        ("GET", f"/api/v1/cameras?unit={b_unit}", None),
        ("GET", f"/api/v1/units/{b_unit}", None),
        ("GET", f"/api/v1/units/{b_village}", None),
        ("GET", f"/api/v1/units?parent={b_unit}", None),
        ("PATCH", f"/api/v1/units/{b_unit}", {"name": "x"}),
        ("DELETE", f"/api/v1/units/{b_village}", None),
        ("POST", "/api/v1/units", {"name": "x", "code": "330199002009", "parent_id": b_unit}),
        ("GET", "/api/v1/users", None),
        ("GET", "/api/v1/audit", None),
    ]
    for method, url, body in denied:
        response = client.request(method, url, json=body, headers=operator_a)
        assert response.status_code in (403, 404), (method, url, response.status_code, response.text)
    listed = client.get("/api/v1/cameras", headers=operator_a).json()["items"]
    assert [c["id"] for c in listed] == [cam_a["id"]]
    units = {u["id"] for u in client.get("/api/v1/units", headers=operator_a).json()}
    assert units == {tree.town_a.id, tree.village_a1.id, tree.village_a2.id}
    assert client.get(f"/api/v1/cameras/{cam_a['id']}", headers=operator_a).status_code == 200
    assert client.get(f"/api/v1/units/{tree.county.id}", headers=operator_a).status_code == 404


def test_technician_writes_only_inside_their_subtree(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    cam_a, cam_b = _cameras(client, tree, login)
    tech_a = login("technician", tree.town_a)
    assert client.post("/api/v1/cameras", json=camera_body(tree.village_a2, "new"), headers=tech_a).status_code == 201
    assert client.patch(f"/api/v1/cameras/{cam_a['id']}", json={"owner": "x"}, headers=tech_a).status_code == 200
    assert client.post("/api/v1/cameras", json=camera_body(tree.village_b1, "new"), headers=tech_a).status_code in (403, 404)
    assert client.post("/api/v1/cameras", json=camera_body(tree.county, "new"), headers=tech_a).status_code in (403, 404)
    moved = client.patch(f"/api/v1/cameras/{cam_a['id']}", json={"unit_id": tree.village_b1.id}, headers=tech_a)
    assert moved.status_code in (403, 404)
    assert client.patch(f"/api/v1/cameras/{cam_b['id']}", json={"owner": "x"}, headers=tech_a).status_code in (403, 404)
    assert client.delete(f"/api/v1/cameras/{cam_b['id']}", headers=tech_a).status_code in (403, 404)
    csv = "name,network,unit_code\nok,xueliang,330199001001\nfar,xueliang,330199002001\n".encode()
    report = client.post("/api/v1/cameras/import", files={"file": ("c.csv", csv)}, headers=tech_a).json()
    assert report["created"] == 1
    assert [(e["line"], "outside your scope" in e["message"]) for e in report["errors"]] == [(3, True)]
    admin = login("admin", tree.county)
    b_names = {c["name"] for c in client.get("/api/v1/cameras", params={"unit": tree.town_b.id}, headers=admin).json()["items"]}
    assert b_names == {"b"}


def test_roles_that_only_read_cannot_write_cameras(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    cam_a, _ = _cameras(client, tree, login)
    for role in ("operator", "safety_official", "investigator"):
        headers = login(role, tree.county)
        assert client.get(f"/api/v1/cameras/{cam_a['id']}", headers=headers).status_code == 200
        assert client.post("/api/v1/cameras", json=camera_body(tree.village_a1, "x"), headers=headers).status_code == 403
        assert client.patch(f"/api/v1/cameras/{cam_a['id']}", json={"name": "y"}, headers=headers).status_code == 403
        assert client.delete(f"/api/v1/cameras/{cam_a['id']}", headers=headers).status_code == 403
        assert client.post("/api/v1/units", json={"name": "x", "code": "330199003000", "parent_id": tree.county.id},
                           headers=headers).status_code == 403


def test_village_admin_manages_only_their_village(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    admin_a1 = login("admin", tree.village_a1)
    ok = client.post("/api/v1/users", json={"username": "op1", "password": "long enough now", "role": "operator",
                                            "unit_id": tree.village_a1.id}, headers=admin_a1)
    assert ok.status_code == 201, ok.text
    far = client.post("/api/v1/users", json={"username": "op2", "password": "long enough now", "role": "admin",
                                             "unit_id": tree.county.id}, headers=admin_a1)
    assert far.status_code == 404
    assert client.post("/api/v1/units", json={"name": "x", "code": "330199001111", "parent_id": tree.town_a.id},
                       headers=admin_a1).status_code == 404
    assert {u["username"] for u in client.get("/api/v1/users", headers=admin_a1).json()} >= {"op1"}
