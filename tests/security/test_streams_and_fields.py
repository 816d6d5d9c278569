"""Holes 7, 12, 13 and 21 of issue 13: what a stream URL may open, control characters and
look-alike digits in what people type, and a camera status that must follow its stream.

Each test is the attack (the request a hostile technician or administrator sends, or the row an
old database still holds) and asserts the refusal and that nothing changed, opened or leaked.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select, update

from api.app import create_app
from api.services import Services
from config.errors import InvalidInput
from detectors.camera_health import HealthRules
from ingest.camera_runner import CameraRunner, StreamSettings
from ingest.worker import IngestWorker
from registry.camera_spec import CameraSpec
from registry.cameras import Camera
from registry.credentials import Credentials
from registry.fields import MultilineText
from registry.units import Unit, create_unit
from tests.alerting import one_fire
from tests.conftest import Tree, camera_body, free_port
from tests.media import make_clip
from tests.rtsp import RtspServer
from tests.security.servers import FakeRtspCamera

# -- helpers ------------------------------------------------------------------------------------


def errors_of(response) -> list[str]:  # type: ignore[no-untyped-def]
    """The fields a 422 names."""
    assert response.status_code == 422, (response.status_code, response.text)
    return [e["field"] for e in response.json().get("errors", [])] or [str(response.json().get("field"))]


def names_field(response, field: str) -> bool:  # type: ignore[no-untyped-def]
    return any(f == field or f.endswith(f".{field}") or f".{field}." in f"{f}." for f in errors_of(response))


def camera_count(services: Services) -> int:
    with services.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Camera)) or 0)


class PortWatch:
    """Probes ports all along a block: did anything listen on them, even for a moment?"""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.listening: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)

    def _probe(self) -> None:
        while not self._stop.is_set():
            for port in self.ports:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    self.listening.add(port)
                except OSError:
                    pass
            self._stop.wait(0.05)

    def __enter__(self) -> PortWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


@contextmanager
def running_worker(services: Services, redis_url: str, media_dirs: tuple[Path, ...],
                   tick: Callable[[CameraRunner], None] | None = None) -> Iterator[CameraRunner]:
    """A real ingest worker (leases, registry feed, stream readers) over `services`' registry."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    runner = CameraRunner(services.sessions, services.registry.cipher, client,
                          StreamSettings(size=(160, 120), interval=0.5, read_timeout=3.0, open_timeout=3.0,
                                         media_dirs=media_dirs, status_refresh_seconds=2.0),
                          HealthRules(offline_after=3.0, online_hold=1.0))
    worker = IngestWorker(services.sessions, client, ttl=6, step_seconds=1, on_assign=runner.assign,
                          on_release=runner.release, on_change=runner.restart,
                          tick=(lambda: tick(runner)) if tick else runner.tick, tick_seconds=0.5)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        worker.stop_event.set()
        thread.join(20)
        runner.stop()


def statuses(services: Services) -> dict[str, tuple[str, str | None]]:
    with services.sessions() as session:
        rows = session.execute(select(Camera.name, Camera.status, Camera.last_error)).all()
    return {name: (status, error) for name, status, error in rows}


def settle(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll until `condition` holds or `timeout` passes; whether it held (the caller asserts,
    with a message that says what was seen)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def old_rows(services: Services, urls: dict[str, str]) -> tuple[Unit, dict[str, int]]:
    """Cameras stored as an old database (before validation existed) holds them: valid rows
    whose stream URL is then rewritten with SQL."""
    with services.sessions() as session:
        county = create_unit(session, name="县", code="330199000000", parent_id=None, scope=None)
        ids = {}
        for name in urls:
            spec = CameraSpec(name=name, network="xueliang", unit_id=county.id, main_stream_url="rtsp://192.0.2.1/x")
            ids[name] = services.registry.create(session, spec, county.path, "test").id
        for name, url in urls.items():
            session.execute(update(Camera).where(Camera.id == ids[name]).values(main_stream_url=url))
        session.commit()
    return county, ids


# -- hole 7: file: URLs --------------------------------------------------------------------------

NESTED = [
    "file:http://127.0.0.1:9/clip.mp4",
    "file:concat:/etc/passwd|/etc/hostname",
    "file:tcp://127.0.0.1:9?listen=1",
    "file:tcp://127.0.0.1:9%3Flisten=1",
    "file:subfile,,start,0,end,0,,:/etc/passwd",
    "file:/srv/lookout/media/../../../etc/passwd",
    "file:///srv/lookout/media/../../../etc/passwd",
    "file:///srv/lookout/media/%2e%2e/%2e%2e/etc/passwd",
    "file:///srv/lookout/media/clip.mp4?listen=1",
    "file://198.51.100.7/share/clip.mp4",
    "file:clip.mp4",
]


@pytest.mark.parametrize("url", NESTED)
def test_technician_cannot_store_a_file_url_that_opens_another_protocol(
    client: TestClient, services: Services, tree: Tree, login, url: str  # type: ignore[no-untyped-def]
) -> None:
    tech = login("technician", tree.village_a1)
    before = camera_count(services)
    created = client.post("/api/v1/cameras", headers=tech, json=camera_body(tree.village_a1, main_stream_url=url))
    assert names_field(created, "main_stream_url"), created.text
    sub = client.post("/api/v1/cameras", headers=tech, json=camera_body(tree.village_a1, sub_stream_url=url))
    assert names_field(sub, "sub_stream_url"), sub.text
    assert camera_count(services) == before

    good = "file:///srv/lookout/media/gate.mp4"
    camera = client.post("/api/v1/cameras", headers=tech,
                         json=camera_body(tree.village_a1, "gate", main_stream_url=good))
    assert camera.status_code == 201, camera.text  # a plain absolute path is what file: means
    patched = client.patch(f"/api/v1/cameras/{camera.json()['id']}", headers=tech, json={"main_stream_url": url})
    assert names_field(patched, "main_stream_url"), patched.text
    stored = client.get(f"/api/v1/cameras/{camera.json()['id']}", headers=tech).json()
    assert stored["main_stream_url"] == good and stored["updated_at"] == camera.json()["updated_at"]


def test_worker_opens_only_plain_files_inside_the_media_folders_for_old_rows(
    sqlite_services: Services, redis_url: str, tmp_path: Path
) -> None:
    media, outside = tmp_path / "media", tmp_path / "outside"
    media.mkdir()
    outside.mkdir()
    inside = make_clip(media / "gate.mp4", seconds=2.0)
    elsewhere = make_clip(outside / "private.mp4", seconds=2.0)
    (media / "link.mp4").symlink_to(elsewhere)  # a link inside the folder to a file outside it
    secret = outside / "secret.txt"
    secret.write_text("county secret\n")
    listen, listen_encoded = free_port(), free_port()
    web = FakeRtspCamera()
    # files inside the folder that name other files or URLs: an HLS playlist and a concat script
    playlist = media / "playlist.mp4"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nhttp://127.0.0.1:{web.port}/seg.ts\n"
                        "#EXT-X-ENDLIST\n")
    script = media / "script.mp4"
    script.write_text(f"ffconcat version 1.0\nfile {elsewhere}\n")
    urls = {
        "inside": inside.as_uri(),
        "listen": f"file:tcp://127.0.0.1:{listen}?listen=1",
        "listen_encoded": f"file:tcp://127.0.0.1:{listen_encoded}%3Flisten=1",
        "http": f"file:http://127.0.0.1:{web.port}/clip.mp4",
        "concat": f"file:concat:{secret}|{secret}",
        "dotdot": f"file://{media}/../outside/private.mp4",
        "outside": elsewhere.as_uri(),
        "missing": (outside / "no-such-clip.mp4").as_uri(),
        "symlink": (media / "link.mp4").as_uri(),
        "playlist": playlist.as_uri(),
        "script": script.as_uri(),
    }
    _, ids = old_rows(sqlite_services, urls)
    refused = [n for n in urls if n != "inside"]
    try:
        with PortWatch([listen, listen_encoded]) as watch, running_worker(sqlite_services, redis_url, (media,)):
            settled = settle(lambda: statuses(sqlite_services)["inside"][0] == "online"
                             and all(statuses(sqlite_services)[n][0] == "offline" for n in refused), 25)
            time.sleep(1.0)  # a few more reconnect tries of every refused camera
            now = statuses(sqlite_services)
    finally:
        web.close()
    assert settled, now
    assert not watch.listening, f"the worker listened on {watch.listening}"
    assert web.requests == [], f"the worker connected to a web server: {web.requests}"
    for name in ("listen", "listen_encoded", "http", "concat", "dotdot"):  # refused before anything opens
        assert now[name][1] is not None and now[name][1].startswith("malformed stream URL: "), (name, now[name])
    # outside the folders, existing or not, through a link or not: one message that tells nothing
    assert now["outside"][1] == now["missing"][1] == now["symlink"][1], now
    assert "media folders" in (now["outside"][1] or "")
    for text in (str(v) for v in now.values()):
        assert "county secret" not in text and "private.mp4" not in text and "no-such-clip" not in text


# -- hole 12: control characters -----------------------------------------------------------------

CONTROL = {
    "crlf": "东门\r\nX-Injected:yes",
    "lf": "东门\n广场",
    "tab": "东门\t广场",
    "escape": "东门\x1b[31m广场",
    "nul": "东门\x00广场",
    "del": "东门\x7f广场",
    "c1": "东门\x85广场",
    "line_separator": "东门\u2028广场",
    "paragraph_separator": "东门\u2029广场",
    "bidi_override": "东门\u202e场广",
}
CAMERA_TEXT_FIELDS = ("name", "owner", "address")


@pytest.mark.parametrize("kind", CONTROL)
def test_technician_cannot_put_control_characters_in_camera_fields(
    client: TestClient, services: Services, tree: Tree, login, kind: str  # type: ignore[no-untyped-def]
) -> None:
    tech = login("technician", tree.village_a1)
    value = CONTROL[kind]
    camera = client.post("/api/v1/cameras", headers=tech, json=camera_body(tree.village_a1, "gate"))
    assert camera.status_code == 201, camera.text
    url = f"/api/v1/cameras/{camera.json()['id']}"
    attempts = {field: {field: value} for field in CAMERA_TEXT_FIELDS}
    attempts["tags"] = {"tags": ["demo", value]}
    attempts["main_stream_url"] = {"main_stream_url": f"rtsp://10.0.0.1/live{value}"}
    attempts["sub_stream_url"] = {"sub_stream_url": f"rtsp://10.0.0.1/{value}/sub"}
    attempts["username"] = {"username": f"admin{value}"}  # it goes into RTSP/HTTP Digest header lines
    attempts["password"] = {"password": f"pw{value}"}
    for field, body in attempts.items():
        created = client.post("/api/v1/cameras", headers=tech, json={**camera_body(tree.village_a1, "new"), **body})
        assert names_field(created, field), (field, created.text)
        patched = client.patch(url, headers=tech, json=body)
        assert names_field(patched, field), (field, patched.text)
    assert camera_count(services) == 1
    kept = (*CAMERA_TEXT_FIELDS, "tags", "main_stream_url", "sub_stream_url", "updated_at")
    after = client.get(url, headers=tech).json()
    assert {k: after[k] for k in kept} == {k: camera.json()[k] for k in kept}
    searched = client.get("/api/v1/cameras", headers=tech, params={"q": value})
    assert names_field(searched, "q"), searched.text


@pytest.mark.parametrize("url", [
    "rtsp://adm%0D%0AX-Injected:yes:pw@10.0.0.1/live",
    "rtsp://admin:pw%0D%0AX-Injected:yes@10.0.0.1/live",
    "rtsp://10.0.0.1/live?user=adm%0D%0AX-Injected:yes&password=pw",
    "rtsp://10.0.0.1:554/user=admin&password=p%0Aw&channel=1&stream=0.sdp?",
])
def test_technician_cannot_hide_control_characters_in_url_credentials(
    client: TestClient, services: Services, tree: Tree, login, url: str  # type: ignore[no-untyped-def]
) -> None:
    """Percent-encoded, a CR LF passes the URL's own check; decoded with the credentials it would
    reach the camera inside a Digest header line (and the worker would refuse the camera for good)."""
    tech = login("technician", tree.village_a1)
    created = client.post("/api/v1/cameras", headers=tech, json=camera_body(tree.village_a1, "gate",
                                                                            main_stream_url=url))
    assert names_field(created, "main_stream_url"), created.text
    assert camera_count(services) == 0
    assert "X-Injected" not in created.text and "pw" not in created.json()["detail"]


@pytest.mark.parametrize("kind", ["crlf", "lf", "c1", "line_separator"])
def test_admin_cannot_put_control_characters_in_unit_and_user_names(
    client: TestClient, services: Services, tree: Tree, login, kind: str  # type: ignore[no-untyped-def]
) -> None:
    admin = login("admin", tree.county)
    value = CONTROL[kind]
    unit = client.post("/api/v1/units", headers=admin, json={"name": value, "code": "330199001009",
                                                              "parent_id": tree.town_a.id})
    assert names_field(unit, "name"), unit.text
    renamed = client.patch(f"/api/v1/units/{tree.village_a1.id}", headers=admin, json={"name": value})
    assert names_field(renamed, "name"), renamed.text
    user = client.post("/api/v1/users", headers=admin, json={
        "username": "wang", "password": "a long and unusual passphrase 7", "role": "operator",
        "unit_id": tree.village_a1.id, "display_name": value})
    assert names_field(user, "display_name"), user.text
    with services.sessions() as session:
        assert session.get(Unit, tree.village_a1.id).name == "东门村"  # type: ignore[union-attr]
        assert session.scalar(select(func.count()).select_from(Unit)) == 6


@pytest.mark.parametrize("kind", ["crlf", "escape", "c1", "paragraph_separator"])
def test_operator_cannot_put_control_characters_in_an_assignee_or_reason(
    client: TestClient, services: Services, tree: Tree, login, kind: str  # type: ignore[no-untyped-def]
) -> None:
    admin = login("admin", tree.county)
    operator = login("operator", tree.village_a1)
    one_fire(client, services, admin, tree.village_a1)
    [alert] = client.get("/api/v1/alerts", headers=operator).json()["items"]
    url = f"/api/v1/alerts/{alert['id']}"
    value = CONTROL[kind]
    sent = client.post(f"{url}/dispatch", headers=operator, json={"assignee": f"消防队 李队长{value}"})
    assert names_field(sent, "assignee"), sent.text
    for action in ("false_alarm", "escalate"):
        refused = client.post(f"{url}/{action}", headers=operator, json={"reason": f"炊烟{value}演习"})
        assert names_field(refused, "reason"), refused.text
    after = client.get(url, headers=operator).json()
    assert after["state"] == "new" and after["assignee"] is None and after["reason"] is None
    assert after["version"] == alert["version"]


def test_feedback_may_have_line_breaks_but_no_other_control_character() -> None:
    """The multi-line type the resolve form's feedback takes."""
    feedback = TypeAdapter(MultilineText)
    assert feedback.validate_python("灭火完毕\r\n无人员伤亡\t(见附件)\n") == "灭火完毕\n无人员伤亡\t(见附件)"
    for value in ("灭火\x1b[2J完毕", "灭火\x85完毕", "灭火\x00完毕", "灭火\u202e完毕"):
        with pytest.raises(ValidationError):
            feedback.validate_python(value)


def test_a_crlf_stream_url_in_an_old_database_never_reaches_the_camera(
    sqlite_services: Services, redis_url: str, tmp_path: Path
) -> None:
    server = RtspServer(free_port(), {"live": make_clip(tmp_path / "live.h264")}).start()
    camera = FakeRtspCamera()  # a camera that records what it is sent
    urls = {
        "control": server.url("live"),
        "crlf": f"rtsp://127.0.0.1:{camera.port}/live\r\nX-Injected:yes",
        "lf": f"rtsp://127.0.0.1:{camera.port}/live\nX-Injected:yes",
        "crlf_real_server": server.url("live") + "\r\nX-Injected:yes",
        "c1": f"rtsp://127.0.0.1:{camera.port}/live\x85X-Injected:yes",
    }
    urls["crlf_username"] = f"rtsp://127.0.0.1:{camera.port}/live"
    _, ids = old_rows(sqlite_services, urls)
    with sqlite_services.sessions() as session:  # a username with CR LF: a header line in a Digest answer
        cipher = sqlite_services.registry.cipher
        stored = cipher.seal(Credentials("admin\r\nX-Injected:yes", "secret", frozenset({f"127.0.0.1:{camera.port}"})))
        session.execute(update(Camera).where(Camera.id == ids["crlf_username"]).values(credentials_sealed=stored))
        session.commit()
    refused = [n for n in urls if n != "control"]
    try:
        with running_worker(sqlite_services, redis_url, ()) as runner:
            settled = settle(lambda: statuses(sqlite_services)["control"][0] == "online"
                             and all(statuses(sqlite_services)[n][0] == "offline" for n in refused), 25)
            now = statuses(sqlite_services)
            readers = {name: ids[name] in runner.readers for name in urls}
    finally:
        camera.close()
        server.kill()
    assert b"X-Injected" not in camera.raw, camera.requests
    assert camera.requests == [], f"the worker connected: {camera.requests}"
    assert settled, now
    assert readers == {"control": True, **dict.fromkeys(refused, False)}  # no reader even starts
    for name in refused:
        expected = ("stored credentials hold control characters: set them again" if name == "crlf_username"
                    else "malformed stream URL: control characters are not allowed")
        assert now[name][1] == expected, (name, now[name])


# -- hole 13: look-alike digits ------------------------------------------------------------------

FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def test_admin_cannot_create_a_look_alike_unit_code(
    client: TestClient, services: Services, tree: Tree, login  # type: ignore[no-untyped-def]
) -> None:
    admin = login("admin", tree.county)
    for code in (tree.town_a.code.translate(FULL_WIDTH), "330199001003".translate(ARABIC_INDIC),
                 "33019900100" + "\u0663", "３30199001003"):
        created = client.post("/api/v1/units", headers=admin, json={"name": "城关镇", "code": code,
                                                                     "parent_id": tree.county.id})
        assert names_field(created, "code"), (code, created.text)
        recoded = client.patch(f"/api/v1/units/{tree.village_a2.id}", headers=admin, json={"code": code})
        assert names_field(recoded, "code"), (code, recoded.text)
    with services.sessions() as session:  # the CLI and the demo go through create_unit
        with pytest.raises(InvalidInput):
            create_unit(session, name="城关镇", code=tree.town_a.code.translate(FULL_WIDTH),
                        parent_id=tree.county.id, scope=None)
        with pytest.raises(InvalidInput):
            create_unit(session, name="城关镇", code="330199001003\n", parent_id=tree.county.id, scope=None)
        session.rollback()
        codes = set(session.scalars(select(Unit.code)))
    assert codes == {tree.county.code, tree.town_a.code, tree.town_b.code, tree.village_a1.code,
                     tree.village_a2.code, tree.village_b1.code}


def test_technician_cannot_register_a_look_alike_device_id(
    client: TestClient, services: Services, tree: Tree, login  # type: ignore[no-untyped-def]
) -> None:
    tech = login("technician", tree.village_a1)
    device = "33010200001320000001"
    first = client.post("/api/v1/cameras", headers=tech, json=camera_body(tree.village_a1, "gate", device_id=device))
    assert first.status_code == 201, first.text
    for look_alike in (device.translate(FULL_WIDTH), device[:-1] + "\u0661", device[:-1] + "１"):
        created = client.post("/api/v1/cameras", headers=tech,
                              json=camera_body(tree.village_a1, "gate2", device_id=look_alike))
        assert names_field(created, "device_id"), (look_alike, created.text)
        patched = client.patch(f"/api/v1/cameras/{first.json()['id']}", headers=tech, json={"device_id": look_alike})
        assert names_field(patched, "device_id"), (look_alike, patched.text)
    csv = ("name,network,unit_code,device_id\n"
           f"gate3,xueliang,{tree.village_a1.code},{device.translate(FULL_WIDTH)}\n"
           f"gate4,xueliang,{tree.village_a1.code.translate(FULL_WIDTH)},\n")
    imported = client.post("/api/v1/cameras/import", headers=tech,
                           files={"file": ("cameras.csv", csv.encode(), "text/csv")})
    assert imported.status_code in (200, 422), imported.text
    report = imported.json()
    assert report.get("created", 0) == 0 and report.get("updated", 0) == 0, report
    assert "device_id" in str(report) and "unit_code" in str(report), report
    with services.sessions() as session:
        assert session.scalars(select(Camera.device_id)).all() == [device]


# -- hole 21: a status that follows the stream -----------------------------------------------------


def test_a_camera_registered_right_after_another_shows_what_its_worker_sees(
    sqlite_services: Services, redis_url: str, tmp_path: Path
) -> None:
    from registry.users import Role, User, hash_password, issue_token

    media = tmp_path / "media"
    media.mkdir()
    first = make_clip(media / "first.mp4", seconds=2.0)
    second = make_clip(media / "second.mp4", seconds=2.0, size=(176, 144))
    with sqlite_services.sessions() as session:
        county = create_unit(session, name="县", code="330199000000", parent_id=None, scope=None)
        user = User(username="tech", role=Role.technician.value, unit_id=county.id,
                    password_hash=hash_password("x" * 8))
        session.add(user)
        session.flush()
        headers = {"Authorization": f"Bearer {issue_token(session, user, timedelta(hours=1))[0]}"}
        session.commit()
    api = TestClient(create_app(sqlite_services))

    def register(name: str, url: str) -> int:
        response = api.post("/api/v1/cameras", headers=headers,
                            json={"name": name, "network": "xueliang", "unit_id": county.id, "main_stream_url": url})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def status(camera_id: int) -> str:
        return str(api.get(f"/api/v1/cameras/{camera_id}", headers=headers).json()["status"])

    # The worker's loop is held at its next tick while the technician works, as a busy worker
    # (a slow detection batch) would be: the registry changes reach it together.
    open_gate, parked = threading.Event(), threading.Event()
    open_gate.set()

    def tick(runner: CameraRunner) -> None:
        if not open_gate.is_set():
            parked.set()
            open_gate.wait(30)
        runner.tick()

    with running_worker(sqlite_services, redis_url, (media,), tick) as runner:
        gate = register("gate", first.as_uri())
        assert settle(lambda: status(gate) == "online", 15), status(gate)

        open_gate.clear()
        assert parked.wait(10)
        assert api.delete(f"/api/v1/cameras/{gate}", headers=headers).status_code == 204
        square = register("square", second.as_uri())
        assert square == gate  # SQLite gives the next camera the id of the one just deleted
        open_gate.set()

        def reader_url() -> str | None:
            reader = runner.readers.get(square)
            return None if reader is None else reader.public_url

        came = settle(lambda: status(square) == "online" and reader_url() == second.as_uri(), 15)
        decoded = runner.readers[square].stats.decoded if square in runner.readers else 0
        assert came, (f"camera {square} is {status(square)!r} while its worker reads {reader_url()} "
                      f"({decoded} frames analysed)")

        # The row rewritten behind the worker's back (an old import, a hand edit): the status
        # comes back at the next registry change of the camera, and without one too.
        with sqlite_services.sessions() as session:
            session.execute(update(Camera).where(Camera.id == square).values(status="unknown"))
            session.commit()
        assert api.put(f"/api/v1/cameras/{square}/rules", headers=headers, json={}).status_code == 200
        assert settle(lambda: status(square) == "online", 10), status(square)
        with sqlite_services.sessions() as session:
            session.execute(update(Camera).where(Camera.id == square).values(status="offline"))
            session.commit()
        assert settle(lambda: status(square) == "online", 10), status(square)


def test_a_camera_deleted_as_two_others_come_online_takes_no_status_with_it(
    sqlite_services: Services, redis_url: str, tmp_path: Path
) -> None:
    """Cameras registered one right after another come online in the same tick; one of them is
    deleted in between. The statuses of the others must still reach the registry."""
    media = tmp_path / "media"
    media.mkdir()
    clip = make_clip(media / "gate.mp4", seconds=2.0)
    _, ids = old_rows(sqlite_services, dict.fromkeys(("first", "second", "gone"), clip.as_uri()))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    runner = CameraRunner(sqlite_services.sessions, sqlite_services.registry.cipher, client,
                          StreamSettings(size=(160, 120), interval=0.5, read_timeout=3.0, open_timeout=3.0,
                                         media_dirs=(media,)),
                          HealthRules(offline_after=3.0, online_hold=1.0))
    failures: list[str] = []

    def tick() -> None:
        try:
            runner.tick()
        except Exception as exc:  # the worker's loop logs a failed tick and goes on
            failures.append(repr(exc))

    try:
        runner.assign(set(ids.values()))
        assert settle(lambda: all(r.stats.last_packet_at is not None for r in runner.readers.values()), 15)
        tick()  # all three are seen streaming: online once it has held for a second
        with sqlite_services.sessions() as session:
            sqlite_services.registry.delete(session, session.get(Camera, ids["gone"]), "test")
            session.commit()
        time.sleep(1.2)
        for _ in range(5):
            tick()
            time.sleep(0.2)
        now = statuses(sqlite_services)
    finally:
        runner.stop()
    assert now == {"first": ("online", None), "second": ("online", None)}, (now, failures)
    assert failures == []

