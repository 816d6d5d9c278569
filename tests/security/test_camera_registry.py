"""Issue 13, holes 1-3 and 9: the camera registry as a hostile technician attacks it.

1. Taking another unit's camera by CSV import (matching its device_id), and learning which
   device ids exist elsewhere from a dry run.
2. Reading a camera's password by pointing its stream (or ONVIF endpoint) at a host the
   technician controls, so the worker sends the stored credentials there.
3. Passwords written into the query string or the NVR path form (`/user=admin&password=...`)
   being stored and shown as they are.
9. A CSV import of more rows than allowed, and the error list of an import being read by
   someone outside its scope.
"""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, text, update

from api.services import Services
from config.redis_names import REGISTRY_STREAM
from ingest.stream_reader import StreamReader
from registry.audit import AuditEntry
from registry.camera_spec import CameraSpec
from registry.cameras import Camera
from registry.credentials import Credentials, join_userinfo, split_userinfo
from tests.conftest import Tree, camera_body, captured_logs, free_port, wait_for
from tests.security.servers import FakeRtspCamera

SECRET_USER, SECRET_PASSWORD = "ops-9137", "Kx7-vault-2288"
DEVICE = "33010200001320000777"


def _import(client: TestClient, headers: dict[str, str], csv_text: str, dry_run: bool = False):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/cameras/import", params={"dry_run": dry_run},
                       files={"file": ("c.csv", csv_text.encode())}, headers=headers)


def _snapshot(services: Services, camera_id: int) -> tuple[object, ...]:
    with services.sessions() as session:
        row = session.execute(text(
            "SELECT unit_id, name, main_stream_url, sub_stream_url, onvif_host, onvif_port, device_id, "
            "credentials_sealed, owner FROM cameras WHERE id = :i"), {"i": camera_id}).one()
    return tuple(row)


# -- hole 1: camera takeover through CSV import ------------------------------------------------

@pytest.fixture
def victim(client: TestClient, tree: Tree, login) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """A camera of the other township (village b1), with a GB/T id and stored credentials."""
    admin = login("admin", tree.county)
    made = client.post("/api/v1/cameras", headers=admin, json=camera_body(
        tree.village_b1, "河口桥", device_id=DEVICE, username=SECRET_USER, password=SECRET_PASSWORD,
        main_stream_url="rtsp://10.9.9.9:554/ch1", onvif_host="10.9.9.9", onvif_port=80))
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


def test_village_technician_cannot_take_a_camera_by_csv(client: TestClient, services: Services, tree: Tree,
                                                        victim: dict[str, object], login) -> None:  # type: ignore[no-untyped-def]
    tech = login("technician", tree.village_a1)
    before = _snapshot(services, victim["id"])  # type: ignore[arg-type]
    attack = ("name,network,unit_code,device_id,main_stream_url\n"
              f"mine,xueliang,{tree.village_a1.code},{DEVICE},rtsp://10.6.6.6:554/x\n")
    unknown = attack.replace(DEVICE, "33010200001320000778")  # a device id nobody uses
    dry = _import(client, tech, attack, dry_run=True)
    real = _import(client, tech, attack)
    for reply in (dry, real):
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert (body["created"], body["updated"]) == (0, 0), body
        assert [e["message"] for e in body["errors"]] == ["device_id not available"], body
        for leak in (f"camera {victim['id']}", tree.village_b1.code, "河口", "10.9.9.9"):
            assert leak not in reply.text
    assert _snapshot(services, victim["id"]) == before  # type: ignore[arg-type]
    # the same request with an id nobody uses creates the camera: only the id's use is told, nothing else
    assert _import(client, tech, unknown).json()["created"] == 1


def test_township_technician_cannot_move_own_camera_out_of_the_township(
        client: TestClient, services: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    tech = login("technician", tree.town_a)
    made = client.post("/api/v1/cameras", headers=tech, json=camera_body(tree.village_a1, "mine", device_id=DEVICE))
    assert made.status_code == 201
    before = _snapshot(services, made.json()["id"])
    attack = f"name,network,unit_code,device_id\nmine,xueliang,{tree.village_b1.code},{DEVICE}\n"
    reply = _import(client, tech, attack)
    assert reply.json()["updated"] == 0 and len(reply.json()["errors"]) == 1
    assert _snapshot(services, made.json()["id"]) == before


def test_village_technician_cannot_probe_or_take_a_device_id_through_the_api(
        client: TestClient, services: Services, tree: Tree, victim: dict[str, object], login) -> None:  # type: ignore[no-untyped-def]
    tech = login("technician", tree.village_a1)
    before = _snapshot(services, victim["id"])  # type: ignore[arg-type]
    created = client.post("/api/v1/cameras", headers=tech, json=camera_body(tree.village_a1, "x", device_id=DEVICE))
    own = client.post("/api/v1/cameras", headers=tech, json=camera_body(tree.village_a1, "own")).json()
    patched = client.patch(f"/api/v1/cameras/{own['id']}", headers=tech, json={"device_id": DEVICE})
    for reply in (created, patched):
        assert reply.status_code == 409, reply.text
        assert reply.json()["detail"] == "device_id not available"
        assert f"camera {victim['id']}" not in reply.text and tree.village_b1.code not in reply.text
    assert _snapshot(services, victim["id"]) == before  # type: ignore[arg-type]
    assert client.get(f"/api/v1/cameras/{own['id']}", headers=tech).json()["device_id"] is None



@pytest.mark.parametrize("meanwhile", ["deleted", "moved"])
def test_a_camera_taken_away_during_an_import_is_a_row_error_not_a_500(
        services: Services, tree: Tree, meanwhile: str) -> None:
    """Between the import's look-up of a batch's targets and its write, a camera may be deleted
    or moved out of the importer's scope by someone else: the row is refused, the rest goes on,
    and a moved camera is not pulled back into the importer's subtree."""
    from registry.csv_import import CameraImporter

    with services.sessions() as session:
        cam = services.registry.create(session, CameraSpec(name="gate", network="xueliang",
                                                           unit_id=tree.village_a1.id), tree.county.path, "test")
        session.commit()
        cam_id = cam.id

    class Raced(CameraImporter):
        def _resolve(self, validated, batch):  # type: ignore[no-untyped-def]
            super()._resolve(validated, batch)
            with services.sessions() as other:  # another person's write, committed in between
                if meanwhile == "deleted":
                    other.execute(delete(Camera).where(Camera.id == cam_id))
                else:
                    other.execute(update(Camera).where(Camera.id == cam_id).values(unit_id=tree.village_b1.id))
                other.commit()

    csv_text = (f"name,network,unit_code,address\ngate,xueliang,{tree.village_a1.code},north gate\n"
                f"yard,xueliang,{tree.village_a1.code},yard\n")
    with services.sessions() as session:
        report = Raced(services.registry, session, tree.village_a1.path, "user:tech").run(csv_text.encode())
    assert report.created == 1 and report.errors_total == 1, report
    assert "deleted or moved" in report.errors[0].message and report.errors[0].line == 2
    with services.sessions() as session:
        gates = session.scalars(select(Camera).where(Camera.name == "gate")).all()
        if meanwhile == "moved":
            assert [(g.unit_id, g.address) for g in gates] == [(tree.village_b1.id, None)]
        else:
            assert gates == []


# -- hole 2: password extraction by changing the stream host ----------------------------------

def read_like_the_worker(services: Services, camera_id: int, server: FakeRtspCamera, requests: int = 3) -> None:
    """What the worker does with a camera (ingest.camera_runner): the stored URL, the sealed
    credentials joined back in by `join_userinfo`, a StreamReader; until `server` saw enough."""
    with services.sessions() as session:
        camera = session.get(Camera, camera_id)
        assert camera is not None
        public = camera.sub_stream_url or camera.main_stream_url
        creds = services.registry.cipher.open(camera.credentials_sealed, camera_id) if camera.credentials_sealed else None
    assert public is not None
    reader = StreamReader(camera_id, join_userinfo(public, creds), public_url=public, open_timeout=2, read_timeout=2,
                          max_backoff=0.3)
    reader.start()
    try:
        wait_for(lambda: len(server.requests) >= requests, 30)
    finally:
        reader.stop()
        reader.join(10)


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_technician_pointing_the_stream_at_his_host_gets_no_password(
        client: TestClient, services: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    camera_port, attacker = FakeRtspCamera(['Basic realm="cam"']), FakeRtspCamera(['Basic realm="trap"'])
    try:
        admin, tech = login("admin", tree.county), login("technician", tree.village_a1)
        cam = client.post("/api/v1/cameras", headers=admin, json=camera_body(
            tree.village_a1, "gate", main_stream_url=camera_port.url(), username=SECRET_USER,
            password=SECRET_PASSWORD)).json()
        read_like_the_worker(services, cam["id"], camera_port)  # the real camera gets them, when it asks
        assert f"Basic {_basic(SECRET_USER, SECRET_PASSWORD)}" in camera_port.authorizations()

        patched = client.patch(f"/api/v1/cameras/{cam['id']}", headers=tech,
                               json={"main_stream_url": attacker.url("steal")})
        assert patched.status_code == 200, patched.text
        body = patched.json()
        assert body["credentials_dropped"] is True and body["has_credentials"] is False, body
        assert "credentials" in body["notice"]
        read_like_the_worker(services, cam["id"], attacker)
        assert attacker.authorizations() == [], attacker.requests
        assert SECRET_PASSWORD.encode() not in attacker.raw and _basic(SECRET_USER, SECRET_PASSWORD).encode() not in attacker.raw
        with services.sessions() as session:
            entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "camera.update")).all()[-1]
            assert entry.after["credentials_dropped"] is True  # type: ignore[index]
    finally:
        camera_port.close()
        attacker.close()


def test_a_row_moved_behind_the_apis_back_still_sends_no_password(
        client: TestClient, services: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    """Rows changed before the fix, or by hand in the database: the credentials stay with the
    host and port they were given for, whatever the URL now says (join_userinfo refuses)."""
    attacker = FakeRtspCamera(['Basic realm="trap"'])
    try:
        admin = login("admin", tree.county)
        cam = client.post("/api/v1/cameras", headers=admin, json=camera_body(
            tree.village_a1, "gate", main_stream_url="rtsp://10.20.0.7:554/ch1", username=SECRET_USER,
            password=SECRET_PASSWORD)).json()
        with services.sessions() as session:
            session.execute(update(Camera).where(Camera.id == cam["id"]).values(main_stream_url=attacker.url()))
            session.commit()
        read_like_the_worker(services, cam["id"], attacker)
        assert attacker.authorizations() == [] and SECRET_PASSWORD.encode() not in attacker.raw
    finally:
        attacker.close()


@pytest.mark.parametrize("challenges", [['Basic realm="cam"', 'Digest realm="cam", nonce="5e1f"'],
                                        ['Digest realm="cam", nonce="5e1f"', 'Basic realm="cam"']])
def test_camera_offering_digest_never_gets_basic_and_nothing_is_sent_unasked(
        services: Services, tree: Tree, challenges: list[str], client: TestClient, login) -> None:  # type: ignore[no-untyped-def]
    camera_port = FakeRtspCamera(challenges)
    try:
        admin = login("admin", tree.county)
        cam = client.post("/api/v1/cameras", headers=admin, json=camera_body(
            tree.village_a1, "gate", main_stream_url=camera_port.url(), username=SECRET_USER,
            password=SECRET_PASSWORD)).json()
        read_like_the_worker(services, cam["id"], camera_port, requests=4)
        first = camera_port.requests[0]
        assert "authorization" not in first.lower()  # nothing before the camera asks
        sent = camera_port.authorizations()
        assert sent and all(a.startswith("Digest ") for a in sent), sent
        assert SECRET_PASSWORD.encode() not in camera_port.raw
        assert _basic(SECRET_USER, SECRET_PASSWORD).encode() not in camera_port.raw
    finally:
        camera_port.close()


@pytest.mark.parametrize("change", [
    {"main_stream_url": "rtsp://10.20.0.8:554/ch1"},          # another host
    {"main_stream_url": "rtsp://10.20.0.7:8554/ch1"},         # another port of the same host
    {"sub_stream_url": "rtsp://10.66.0.1/ch2"},               # a second URL at a new host
    {"onvif_host": "10.66.0.1"},                              # the ONVIF endpoint moved
    {"onvif_port": 8080},
])
def test_technician_changing_host_or_port_drops_the_credentials(
        client: TestClient, services: Services, tree: Tree, login, change: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    admin, tech = login("admin", tree.county), login("technician", tree.village_a1)
    cam = client.post("/api/v1/cameras", headers=admin, json=camera_body(
        tree.village_a1, "gate", main_stream_url="rtsp://10.20.0.7/ch1", onvif_host="10.20.0.7", onvif_port=80,
        username=SECRET_USER, password=SECRET_PASSWORD)).json()
    same_host = client.patch(f"/api/v1/cameras/{cam['id']}", headers=tech,
                             json={"main_stream_url": "rtsp://10.20.0.7:554/ch1?profile=2"}).json()
    assert same_host["credentials_dropped"] is False and same_host["has_credentials"] is True
    moved = client.patch(f"/api/v1/cameras/{cam['id']}", headers=tech, json=change).json()
    assert moved["credentials_dropped"] is True and moved["has_credentials"] is False, moved
    with services.sessions() as session:
        assert session.get(Camera, cam["id"]).credentials_sealed is None  # type: ignore[union-attr]
    # new credentials in the same request are kept, and belong to the new endpoints
    again = client.patch(f"/api/v1/cameras/{cam['id']}", headers=tech,
                         json={"main_stream_url": "rtsp://10.30.0.1/ch1", "username": "u2", "password": "p2"}).json()
    assert again["credentials_dropped"] is False and again["has_credentials"] is True
    with services.sessions() as session:
        creds = services.registry.credentials(session.get(Camera, cam["id"]))  # type: ignore[arg-type]
    assert creds == Credentials("u2", "p2")
    assert join_userinfo("rtsp://10.30.0.1/ch1", creds) == "rtsp://u2:p2@10.30.0.1/ch1"
    assert join_userinfo("rtsp://10.20.0.7/ch1", creds) == "rtsp://10.20.0.7/ch1"


def test_csv_update_changing_the_host_drops_the_credentials(
        client: TestClient, services: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    tech = login("technician", tree.village_a1)
    cam = client.post("/api/v1/cameras", headers=tech, json=camera_body(
        tree.village_a1, "gate", main_stream_url="rtsp://10.20.0.7/ch1", username=SECRET_USER,
        password=SECRET_PASSWORD)).json()
    reply = _import(client, tech, f"name,network,unit_code,main_stream_url\n"
                                  f"gate,xueliang,{tree.village_a1.code},rtsp://10.66.6.6/ch1\n").json()
    assert reply["updated"] == 1 and reply["credentials_dropped"] == 1, reply
    assert client.get(f"/api/v1/cameras/{cam['id']}", headers=tech).json()["has_credentials"] is False


@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_technician_cannot_read_the_password_from_the_cameras_last_error(
        client: TestClient, services: Services, tree: Tree, login, form: str) -> None:  # type: ignore[no-untyped-def]
    """FFmpeg's error quotes the URL the reader opened, credentials and all; the reader used to
    swap it for the public URL only after cutting the text to 300 characters, so a path long
    enough (same host and port: the credentials stay) left the password in `last_error`."""
    tech = login("technician", tree.village_a1)
    port = free_port()  # nothing listens: connection refused
    base = f"rtsp://127.0.0.1:{port}/live"
    url = (f"rtsp://{SECRET_USER}:{SECRET_PASSWORD}@127.0.0.1:{port}/live" if form == "userinfo"
           else f"{base}?user={SECRET_USER}&password={SECRET_PASSWORD}")
    cam = client.post("/api/v1/cameras", headers=tech, json=camera_body(tree.village_a1, "gate", main_stream_url=url))
    assert cam.status_code == 201, cam.text
    long_path = f"{base}/{'a' * 400}" + (f"?user={SECRET_USER}&password={SECRET_PASSWORD}" if form == "query" else "")
    patched = client.patch(f"/api/v1/cameras/{cam.json()['id']}", headers=tech, json={"main_stream_url": long_path})
    assert patched.status_code == 200 and patched.json()["credentials_dropped"] is False, patched.text
    with services.sessions() as session:
        camera = session.get(Camera, cam.json()["id"])
        assert camera is not None and camera.main_stream_url is not None
        creds = services.registry.credentials(camera)
        public = camera.main_stream_url
    opened = join_userinfo(public, creds)
    assert SECRET_PASSWORD in opened  # the reader does get the password: the camera's own endpoint
    reader = StreamReader(1, opened, public_url=public, open_timeout=2, read_timeout=2, max_backoff=0.3)
    reader.start()
    try:
        wait_for(lambda: reader.stats.last_error is not None, 30)
    finally:
        reader.stop()
        reader.join(10)
    shown = reader.stats.last_error or ""
    assert "refused" in shown.lower(), shown
    assert SECRET_PASSWORD not in shown and SECRET_USER not in shown, shown


# -- hole 3: passwords in query strings and the NVR path form -----------------------------------

SHAPES = [
    "rtsp://10.5.0.9:554/cam/realmonitor?channel=1&subtype=0&user={u}&password={p}",
    "rtsp://10.5.0.9:554/user={u}&password={p}&channel=1&stream=0.sdp?",
    "rtsp://10.5.0.9/live?USERNAME={u}&PWD={p}",
    "http://10.5.0.9:8080/video.mjpg?passwd={p}&user={u}&fps=5",
    "rtsp://10.5.0.9/h264/ch1/main/av_stream?Password={p}",
    # XMEye (Xiongmai) cameras: `_` before each key, and the stream's own query after it
    "rtsp://10.5.0.9:554/user={u}_password={p}_channel=1_stream=0.sdp?real_stream",
    "rtsp://10.5.0.9/live?user={u};password={p};channel=2",
    "http://10.5.0.9:81/videostream.cgi?loginuse={u}&loginpas={p}",
    # values kept exactly as written: the camera decodes them, not Lookout
    "rtsp://10.5.0.9/live?channel=1&pwd={p}%2Bq&user={u}",
    "rtsp://10.5.0.9/live?password={p}@b&user={u}",
]


@pytest.mark.parametrize("shape", SHAPES)
def test_password_in_query_or_path_is_sealed_and_put_back_only_for_the_reader(shape: str) -> None:
    url = shape.format(u=SECRET_USER, p=SECRET_PASSWORD)
    clean, creds = split_userinfo(url)
    assert creds is not None and creds.password.startswith(SECRET_PASSWORD) and creds.username in ("", SECRET_USER)
    assert SECRET_PASSWORD not in clean and SECRET_USER not in clean
    assert join_userinfo(clean, creds) == url  # the reader gets the URL in the camera's own form


def test_query_string_passwords_appear_nowhere(client: TestClient, services: Services, tree: Tree,
                                               login) -> None:  # type: ignore[no-untyped-def]
    bodies: list[str] = []
    with captured_logs() as stream:
        tech = login("technician", tree.village_a1)
        main = SHAPES[0].format(u=SECRET_USER, p=SECRET_PASSWORD)
        sub = SHAPES[1].format(u=SECRET_USER, p=SECRET_PASSWORD)
        made = client.post("/api/v1/cameras", headers=tech, json=camera_body(
            tree.village_a1, "nvr", main_stream_url=main, sub_stream_url=sub))
        assert made.status_code == 201, made.text
        cam = made.json()
        bodies.append(made.text)
        assert cam["has_credentials"] is True
        assert cam["main_stream_url"] == "rtsp://10.5.0.9:554/cam/realmonitor?channel=1&subtype=0"
        assert cam["sub_stream_url"] == "rtsp://10.5.0.9:554/channel=1&stream=0.sdp?"
        other = SHAPES[2].format(u=SECRET_USER, p=SECRET_PASSWORD)
        bodies.append(client.patch(f"/api/v1/cameras/{cam['id']}", headers=tech,
                                   json={"main_stream_url": other}).text)
        csv_url = SHAPES[3].format(u=SECRET_USER, p=SECRET_PASSWORD)
        bodies.append(_import(client, tech, f"name,network,unit_code,main_stream_url\n"
                                            f"csvcam,xueliang,{tree.village_a1.code},{csv_url}\n").text)
        bad = client.post("/api/v1/cameras", headers=tech, json=camera_body(
            tree.village_a1, "bad", network="nope", main_stream_url=main))
        assert bad.status_code == 422
        bodies.append(bad.text)
        for url in ("/api/v1/cameras", f"/api/v1/cameras/{cam['id']}", "/api/v1/audit"):
            bodies.append(client.get(url, headers=login("admin", tree.county)).text)
        assert services.redis is not None
        bodies.append(json.dumps([fields for _, fields in services.redis.xrange(REGISTRY_STREAM)], default=str))
    logs = stream.getvalue()
    for body in bodies + [logs]:
        assert SECRET_PASSWORD not in body and SECRET_USER not in body
    with services.sessions() as session:
        rows = session.execute(text("SELECT main_stream_url, sub_stream_url, credentials_sealed FROM cameras")).all()
        stored = session.get(Camera, cam["id"])
        creds = services.registry.credentials(stored)  # type: ignore[arg-type]
        assert stored is not None and creds is not None
        worker_url = join_userinfo(stored.main_stream_url, creds)  # type: ignore[arg-type]
    for row in rows:
        assert all(SECRET_PASSWORD not in (value or "") for value in row)
    assert worker_url == other  # the camera gets its password in the form it expects


# -- hole 9: row cap and the error list ------------------------------------------------------------

def test_import_over_the_row_cap_is_refused_before_anything_is_written(
        client: TestClient, services: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    services.settings.security.import_max_rows = 5
    tech = login("technician", tree.village_a1)
    rows = "".join(f"c{i},xueliang,{tree.village_a1.code}\n" for i in range(6))
    reply = _import(client, tech, "name,network,unit_code\n" + rows)
    assert reply.status_code == 413, reply.text
    assert "5 rows" in reply.json()["detail"] and "import_max_rows" in reply.json()["detail"]
    assert client.get("/api/v1/cameras", headers=tech).json()["items"] == []


def test_error_list_of_an_import_is_only_for_its_scope(client: TestClient, services: Services, tree: Tree,
                                                      login) -> None:  # type: ignore[no-untyped-def]
    services.settings.security.import_errors_shown = 2
    tech = login("technician", tree.village_a1)
    bad = "".join(f"c{i},skynet,{tree.village_a1.code}\n" for i in range(5))
    body = _import(client, tech, "name,network,unit_code\n" + bad).json()
    assert body["errors_total"] == 5 and len(body["errors"]) == 2
    listed = client.get(body["errors_url"], headers=tech)
    assert listed.status_code == 200 and [e["line"] for e in listed.json()["items"]] == [2, 3, 4, 5, 6]
    assert client.get(body["errors_url"], headers=login("admin", tree.town_a)).status_code == 200  # above it
    for outsider in (login("technician", tree.village_a2), login("admin", tree.town_b)):
        refused = client.get(body["errors_url"], headers=outsider)
        assert refused.status_code == 404 and "skynet" not in refused.text


def test_rows_stored_before_the_fix_are_bound_and_cleaned_at_start(
        client: TestClient, services: Services, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    """What the upgrade finds: credentials sealed without endpoints (sent anywhere by the
    worker) and a password still inside a stored query string (shown by the API)."""
    from cryptography.fernet import Fernet

    from registry.camera_credentials import secure_stored_credentials
    from tests.conftest import SECRET

    legacy = Fernet(SECRET).encrypt(json.dumps({"u": SECRET_USER, "p": SECRET_PASSWORD}).encode()).decode()
    in_query = f"rtsp://10.5.0.9/live?channel=2&user={SECRET_USER}&password={SECRET_PASSWORD}"
    with services.sessions() as session:
        old = Camera(name="old", network="xueliang", unit_id=tree.village_a1.id, main_stream_url="rtsp://10.20.0.7/ch1",
                     credentials_sealed=legacy)
        leaky = Camera(name="leaky", network="xueliang", unit_id=tree.village_a1.id, main_stream_url=in_query)
        session.add_all([old, leaky])
        session.commit()
        ids = old.id, leaky.id
    assert secure_stored_credentials(services.sessions(), services.registry.cipher) == 2
    assert secure_stored_credentials(services.sessions(), services.registry.cipher) == 0  # idempotent
    with services.sessions() as session:
        session.execute(update(Camera).where(Camera.id == ids[0]).values(main_stream_url="rtsp://10.66.6.6/ch1"))
        session.commit()
        moved, cleaned = session.get(Camera, ids[0]), session.get(Camera, ids[1])
        assert moved is not None and cleaned is not None
        moved_creds, cleaned_creds = services.registry.credentials(moved), services.registry.credentials(cleaned)
    assert join_userinfo("rtsp://10.66.6.6/ch1", moved_creds) == "rtsp://10.66.6.6/ch1"
    assert join_userinfo("rtsp://10.20.0.7/ch1", moved_creds) == f"rtsp://{SECRET_USER}:{SECRET_PASSWORD}@10.20.0.7/ch1"
    assert cleaned.main_stream_url == "rtsp://10.5.0.9/live?channel=2"
    assert join_userinfo(cleaned.main_stream_url, cleaned_creds) == in_query
    shown = client.get(f"/api/v1/cameras/{ids[1]}", headers=login("admin", tree.county))
    assert shown.json()["has_credentials"] is True and SECRET_PASSWORD not in shown.text
