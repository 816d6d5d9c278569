"""Camera credentials appear in no API response and no log line, and are encrypted at rest."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import text

from api.services import Services
from registry.cameras import Camera
from registry.credentials import Credentials
from tests.conftest import Tree, camera_body, captured_logs

USER, PASSWORD = "svc-viewer-7731", "Pa55-w0rd-9921"
URL_USER, URL_PASSWORD = "urluser-4410", "urlsecret-5532"


def test_credentials_never_leave_in_responses_or_logs(client: TestClient, services: Services, tree: Tree,
                                                     login) -> None:  # type: ignore[no-untyped-def]
    with captured_logs() as stream:
        admin = login("admin", tree.county)
        bodies: list[str] = []
        created = client.post("/api/v1/cameras", headers=admin, json=camera_body(
            tree.village_a1, "secret-cam", username=USER, password=PASSWORD,
            main_stream_url=f"rtsp://{URL_USER}:{URL_PASSWORD}@10.1.1.1:554/ch1"))
        assert created.status_code == 201
        cam = created.json()
        assert cam["has_credentials"] is True
        assert cam["main_stream_url"] == "rtsp://10.1.1.1:554/ch1"
        bodies.append(created.text)
        second = client.post("/api/v1/cameras", headers=admin, json=camera_body(
            tree.village_a1, "url-only", main_stream_url=f"rtsp://{URL_USER}:{URL_PASSWORD}@10.1.1.2/ch1"))
        bodies.append(second.text)
        bad = client.post("/api/v1/cameras", headers=admin, json=camera_body(
            tree.village_a1, "bad", network="nope", username=USER, password=PASSWORD))
        assert bad.status_code == 422
        bodies.append(bad.text)
        invalid = client.post("/api/v1/cameras", headers=admin, json=camera_body(
            tree.village_a1, "bad2", latitude=999, username=USER, password=PASSWORD))
        assert invalid.status_code == 422
        bodies.append(invalid.text)
        for url in (f"/api/v1/cameras/{cam['id']}", "/api/v1/cameras", "/api/v1/audit"):
            bodies.append(client.get(url, headers=admin).text)
        patched = client.patch(f"/api/v1/cameras/{cam['id']}", json={"password": PASSWORD + "x"}, headers=admin)
        bodies.append(patched.text)
        bodies.append(client.get("/api/v1/audit", headers=admin).text)
        csv = f"name,network,unit_code,username,password\ncsvcam,huiyan,330199001001,{USER},{PASSWORD}\n".encode()
        bodies.append(client.post("/api/v1/cameras/import", files={"file": ("c.csv", csv)}, headers=admin).text)
        bodies.append(client.get("/api/v1/audit", headers=admin).text)
        bodies.append(client.get("/metrics").text)
    logs = stream.getvalue()
    assert "http_request" in logs  # the log really captured the requests
    for secret in (USER, PASSWORD, URL_USER, URL_PASSWORD):
        for body in bodies:
            assert secret not in body
        assert secret not in logs

    with services.sessions() as session:
        stored = session.get(Camera, cam["id"])
        assert stored is not None
        raw = session.execute(text("SELECT credentials_sealed, main_stream_url FROM cameras WHERE id = :i"),
                              {"i": cam["id"]}).one()
        assert PASSWORD not in raw[0] and USER not in raw[0] and URL_PASSWORD not in raw[1]
        assert services.registry.credentials(stored) == Credentials(USER, PASSWORD + "x")
        from_url = session.execute(text("SELECT id FROM cameras WHERE name = 'url-only'")).scalar_one()
        assert services.registry.credentials(session.get(Camera, from_url)) == Credentials(URL_USER, URL_PASSWORD)  # type: ignore[arg-type]
    assert "***" in repr(Credentials(USER, PASSWORD)) and PASSWORD not in repr(Credentials(USER, PASSWORD))
    json.loads(logs.splitlines()[0])  # one JSON object per line


def test_clear_credentials(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    cam = client.post("/api/v1/cameras", headers=admin,
                      json=camera_body(tree.village_a1, "c", username="u", password="p")).json()
    assert cam["has_credentials"] is True
    cleared = client.patch(f"/api/v1/cameras/{cam['id']}", json={"clear_credentials": True}, headers=admin).json()
    assert cleared["has_credentials"] is False
