"""Camera CRUD, filters and cursor paging through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.services import Services
from config.redis_names import REGISTRY_STREAM
from tests.conftest import Tree, camera_body


def test_create_read_update_delete_camera(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    body = camera_body(
        tree.village_a1, "东门广场1号", network="tianwang", owner="城关派出所", latitude=30.27, longitude=120.15,
        address="东门广场北侧", main_stream_url="rtsp://10.0.0.7:554/Streaming/Channels/101",
        sub_stream_url="rtsp://10.0.0.7:554/Streaming/Channels/102", onvif_host="10.0.0.7", onvif_port=80,
        device_id="33010200001320000001", tags=["广场", "人员密集"],
    )
    created = client.post("/api/v1/cameras", json=body, headers=admin)
    assert created.status_code == 201, created.text
    camera = created.json()
    assert camera["status"] == "unknown" and camera["enabled"] is True
    assert camera["tags"] == sorted(["广场", "人员密集"])
    got = client.get(f"/api/v1/cameras/{camera['id']}", headers=admin).json()
    assert got == camera
    patched = client.patch(f"/api/v1/cameras/{camera['id']}", json={"enabled": False, "tags": ["学校"], "owner": None},
                           headers=admin)
    assert patched.status_code == 200, patched.text
    assert patched.json()["enabled"] is False and patched.json()["tags"] == ["学校"] and patched.json()["owner"] is None
    assert client.delete(f"/api/v1/cameras/{camera['id']}", headers=admin).status_code == 204
    assert client.get(f"/api/v1/cameras/{camera['id']}", headers=admin).status_code == 404


def test_camera_writes_reach_the_registry_stream_in_redis(client: TestClient, services: Services, tree: Tree,
                                                           login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    cam = client.post("/api/v1/cameras", json=camera_body(tree.village_a1), headers=admin).json()
    client.patch(f"/api/v1/cameras/{cam['id']}", json={"enabled": False}, headers=admin)
    client.delete(f"/api/v1/cameras/{cam['id']}", headers=admin)
    assert services.redis is not None
    entries = services.redis.xrange(REGISTRY_STREAM)
    assert [(e[1]["op"], e[1]["camera_id"]) for e in entries] == [
        ("create", str(cam["id"])), ("update", str(cam["id"])), ("delete", str(cam["id"]))]


def test_invalid_camera_fields_are_422_naming_the_field(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    cases = {
        "network": {"network": "skynet"},
        "latitude": {"latitude": 91, "longitude": 120},
        "device_id": {"device_id": "123"},
        "main_stream_url": {"main_stream_url": "ftp://x/y"},
        "onvif_port": {"onvif_port": 70000},
        "name": {"name": "bad\x00name"},
    }
    for field, extra in cases.items():
        response = client.post("/api/v1/cameras", json=camera_body(tree.village_a1, **extra), headers=admin)
        assert response.status_code == 422, (field, response.text)
        assert field in response.text
    lone = client.post("/api/v1/cameras", json=camera_body(tree.village_a1, latitude=30.0), headers=admin)
    assert lone.status_code == 422 and "longitude" in lone.text


def test_duplicate_name_in_unit_or_device_id_is_409(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    assert client.post("/api/v1/cameras", json=camera_body(tree.village_a1, "a", device_id="1" * 20), headers=admin).status_code == 201
    assert client.post("/api/v1/cameras", json=camera_body(tree.village_a1, "a"), headers=admin).status_code == 409
    assert client.post("/api/v1/cameras", json=camera_body(tree.village_a2, "b", device_id="1" * 20), headers=admin).status_code == 409
    assert client.post("/api/v1/cameras", json=camera_body(tree.village_a2, "a"), headers=admin).status_code == 201


def test_filters_by_network_unit_subtree_status_tag_text_bbox(client: TestClient, services: Services, tree: Tree,
                                                              login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    specs = [
        (tree.village_a1, "东门1", "tianwang", ["school"], (30.0, 120.0)),
        (tree.village_a2, "西街1", "xueliang", ["market"], (30.5, 120.5)),
        (tree.village_b1, "河口1", "huiyan", ["school"], (31.0, 121.0)),
        (tree.town_b, "河口镇政府", "traffic", [], None),
    ]
    ids = {}
    for unit, name, network, tags, coords in specs:
        extra = {"latitude": coords[0], "longitude": coords[1]} if coords else {}
        ids[name] = client.post("/api/v1/cameras", json=camera_body(unit, name, network=network, tags=tags, **extra),
                                headers=admin).json()["id"]
    from registry.cameras import Camera

    with services.sessions() as session:
        session.get(Camera, ids["西街1"]).status = "offline"  # type: ignore[union-attr]
        session.commit()

    def names(**params: object) -> set[str]:
        response = client.get("/api/v1/cameras", params=params, headers=admin)
        assert response.status_code == 200, response.text
        return {c["name"] for c in response.json()["items"]}

    assert names(network="tianwang") == {"东门1"}
    assert names(network=["tianwang", "huiyan"]) == {"东门1", "河口1"}
    assert names(unit=tree.town_a.id) == {"东门1", "西街1"}
    assert names(unit=tree.town_b.id) == {"河口1", "河口镇政府"}
    assert names(status="offline") == {"西街1"}
    assert names(tag="school") == {"东门1", "河口1"}
    assert names(q="河口") == {"河口1", "河口镇政府"}
    assert names(bbox="120.4,30.4,121.5,31.5") == {"西街1", "河口1"}
    assert names(tag="school", unit=tree.town_b.id) == {"河口1"}
    total = client.get("/api/v1/cameras", params={"with_total": True, "tag": "school"}, headers=admin).json()["total"]
    assert total == 2
    assert client.get("/api/v1/cameras", params={"network": "nope"}, headers=admin).status_code == 422
    assert client.get("/api/v1/cameras", params={"bbox": "1,2,3"}, headers=admin).status_code == 422
    assert client.get("/api/v1/cameras", params={"cursor": "!!"}, headers=admin).status_code == 422


def test_cursor_paging_returns_every_camera_exactly_once(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    for i in range(23):
        client.post("/api/v1/cameras", json=camera_body(tree.village_a1, f"cam{i:02d}"), headers=admin)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/cameras", params=params, headers=admin).json()
        seen += [c["name"] for c in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 5
    assert sorted(seen) == [f"cam{i:02d}" for i in range(23)]


def test_every_camera_write_is_audited_with_before_and_after(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county, username="chief")
    cam = client.post("/api/v1/cameras", json=camera_body(tree.village_a1, "a"), headers=admin).json()
    client.patch(f"/api/v1/cameras/{cam['id']}", json={"name": "b"}, headers=admin)
    client.delete(f"/api/v1/cameras/{cam['id']}", headers=admin)
    entries = client.get("/api/v1/audit", params={"target_type": "camera"}, headers=admin).json()["items"]
    assert [e["action"] for e in entries] == ["camera.delete", "camera.update", "camera.create"]
    assert all(e["actor"] == "user:chief" for e in entries)
    delete, update, create = entries
    assert create["before"] is None and create["after"]["name"] == "a"
    assert update["before"]["name"] == "a" and update["after"]["name"] == "b"
    assert delete["before"]["name"] == "b" and delete["after"] is None


def test_text_search_follows_every_kind_of_write(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)

    def found(q: str) -> set[str]:
        response = client.get("/api/v1/cameras", params={"q": q}, headers=admin)
        assert response.status_code == 200, response.text
        return {c["name"] for c in response.json()["items"]}

    cam = client.post("/api/v1/cameras", headers=admin, json=camera_body(
        tree.village_a1, "东门广场北侧", address="人民路12号", device_id="33010200001320000001")).json()
    client.post("/api/v1/cameras", headers=admin, json=camera_body(tree.village_a2, "Market Gate", address="西街"))
    assert found("广场北") == {"东门广场北侧"}
    assert found("人民路") == {"东门广场北侧"}
    assert found("market") == {"Market Gate"}  # case does not matter
    assert found("门") == {"东门广场北侧"}  # one character: too short for trigrams, still found
    assert found("3301020000") == {"东门广场北侧"}  # device id prefix
    assert found("0001320000") == set()  # not the start of the id
    assert found("50%_") == set()  # LIKE wildcards are literal
    client.patch(f"/api/v1/cameras/{cam['id']}", json={"name": "西街口"}, headers=admin)
    assert found("广场北") == set() and found("西街口") == {"西街口"}
    csv = "name,network,unit_code,device_id\n河口大桥,xueliang,330199001001,33010200001320000001\n".encode()
    assert client.post("/api/v1/cameras/import", files={"file": ("c.csv", csv)}, headers=admin).json()["updated"] == 1
    csv = "name,network,unit_code\n新建点位,xueliang,330199002001\n".encode()
    assert client.post("/api/v1/cameras/import", files={"file": ("c.csv", csv)}, headers=admin).json()["created"] == 1
    assert found("西街口") == set() and found("河口大桥") == {"河口大桥"} and found("新建点") == {"新建点位"}
    client.post("/api/v1/cameras", headers=admin, json=camera_body(tree.village_b1, "after import"))
    assert found("after imp") == {"after import"}  # row triggers are back on after the import
    client.delete(f"/api/v1/cameras/{cam['id']}", headers=admin)
    assert found("河口大桥") == set()
