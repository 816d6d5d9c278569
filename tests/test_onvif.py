"""ONVIF against a real device emulator (PyPI ipycam, tests/onvif_emulator.py): probe, register,
stream, discover, PTZ preset, and each failure as a clear 4xx/5xx.

Everything here runs in a loopback-only network namespace (tests/netns.py): the emulator binds
every interface and multicasts, and discovery probes every interface. Redis, the RTSP server,
the emulator, the API's client threads and the worker are all started inside it.
"""

from __future__ import annotations

import asyncio
import http.server
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.services import Services, build_services
from config.processes import die_with_parent
from detectors.camera_health import HealthRules
from ingest.camera_runner import CameraRunner, StreamSettings
from ingest.worker import IngestWorker
from registry.audit import AuditEntry
from registry.migrate import upgrade
from registry.units import Unit, create_unit
from tests.conftest import bearer_headers, free_port, make_settings, start_redis, wait_for
from tests.media import make_clip
from tests.netns import NamespaceUnavailable, loopback_namespace
from tests.rtsp import RtspServer

USER, PASSWORD = "admin", "onvif-pass-7731"
EMULATOR = Path(__file__).with_name("onvif_emulator.py")


@dataclass
class Lab:
    services: Services
    redis_url: str
    client: TestClient
    county: Unit
    technician: dict[str, str]
    operator: dict[str, str]
    investigator: dict[str, str]
    onvif_port: int
    rtsp: RtspServer
    folder: Path


def start_emulator(folder: Path, port: int, rtsp_port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(EMULATOR), "--port", str(port), "--rtsp-port", str(rtsp_port), "--user", USER,
         "--password", PASSWORD, "--name", "Gate-Camera", "--preset", "gate:Gate:0.5:-0.25:0.3",
         "--workdir", str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=die_with_parent,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("READY"):
        process.kill()
        raise RuntimeError(f"ONVIF emulator did not start: {line} {process.stderr.read() if process.stderr else ''}")
    return process


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    folder = tmp_path_factory.mktemp("onvif")
    try:
        namespace = loopback_namespace()
        namespace.__enter__()
    except NamespaceUnavailable as exc:
        pytest.skip(f"needs a network namespace (root): {exc}")
    processes: list[subprocess.Popen] = []  # type: ignore[type-arg]
    rtsp = None
    try:
        redis_process, redis_url = start_redis(folder)
        processes.append(redis_process)
        mounts = {"main": make_clip(folder / "main.h264", size=(640, 360)),
                  "sub": make_clip(folder / "sub.h264", size=(320, 240))}
        rtsp = RtspServer(free_port(), mounts).start()
        onvif_port = free_port()
        processes.append(start_emulator(folder, onvif_port, rtsp.port))
        services = build_services(make_settings(f"sqlite:///{folder / 'registry.db'}", redis_url, folder))
        upgrade(services.engine)
        with services.sessions() as session:
            county = create_unit(session, name="示范县", code="330199000000", parent_id=None, scope=None)
            session.commit()
        with TestClient(create_app(services)) as client:  # its threads start here, inside the namespace
            yield Lab(services, redis_url, client, county,
                      bearer_headers(services, "technician", county, "tech"),
                      bearer_headers(services, "operator", county, "op"),
                      bearer_headers(services, "investigator", county, "inv"), onvif_port, rtsp, folder)
        services.close()
    finally:
        if rtsp is not None:
            rtsp.kill()
        for process in processes:
            process.kill()
            process.wait(10)
        namespace.__exit__(None, None, None)


@pytest.fixture
def lab_clean(lab: Lab) -> Lab:
    from registry.cameras import Camera

    with lab.services.sessions() as session:
        for camera in session.scalars(select(Camera)):
            session.delete(camera)
        session.commit()
    return lab


def probe_body(lab: Lab, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {"host": "127.0.0.1", "port": lab.onvif_port, "username": USER, "password": PASSWORD}
    body.update(extra)
    return body


def test_probe_returns_profiles_and_a_stream_a_worker_then_reads(lab_clean: Lab) -> None:
    lab = lab_clean
    found = lab.client.post("/api/v1/cameras/probe", json=probe_body(lab), headers=lab.technician)
    assert found.status_code == 200, found.text
    probe = found.json()
    assert (probe["manufacturer"], probe["model"], probe["serial_number"]) == ("IPyCam", "VirtualCam-1", "LK-TEST-0001")
    assert [(p["token"], p["encoding"], p["width"], p["height"]) for p in probe["profiles"]] == [
        ("Profile_Main", "H264", 1280, 720), ("Profile_Sub", "H264", 320, 240)]
    assert probe["main_stream_url"] == lab.rtsp.url("main")
    assert probe["sub_stream_url"] == lab.rtsp.url("sub")
    assert probe["snapshot_url"] == f"http://127.0.0.1:{lab.onvif_port}/snapshot.jpg"
    assert probe["ptz"] is True and {"gate", "home"} <= {p["token"] for p in probe["presets"]}
    assert probe["registered_camera_ids"] == []
    assert PASSWORD not in found.text

    draft = probe["camera"]
    body = {**draft, "network": "xueliang", "unit_id": lab.county.id, "username": USER, "password": PASSWORD}
    created = lab.client.post("/api/v1/cameras", json=body, headers=lab.technician)
    assert created.status_code == 201, created.text
    camera_id = created.json()["id"]
    again = lab.client.post("/api/v1/cameras/probe", json=probe_body(lab), headers=lab.technician).json()
    assert again["registered_camera_ids"] == [camera_id]

    # a worker (its threads started here, in the namespace) reads the probed sub stream
    client = redis.Redis.from_url(lab.redis_url, decode_responses=True)
    runner = CameraRunner(lab.services.sessions, lab.services.registry.cipher, client,
                          StreamSettings(size=(160, 120), interval=0.5, read_timeout=3.0, open_timeout=3.0,
                                         segment_dir=lab.folder / "segments", segment_seconds=2.0),
                          HealthRules(offline_after=3.0, online_hold=1.0))
    worker = IngestWorker(lab.services.sessions, client, ttl=6, step_seconds=1, on_assign=runner.assign,
                          on_release=runner.release, on_change=runner.restart, tick=runner.tick, tick_seconds=0.5)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        def figures() -> dict[str, object]:
            return lab.client.get(f"/api/v1/cameras/{camera_id}/stream", headers=lab.operator).json()  # type: ignore[no-any-return]

        wait_for(lambda: (figures().get("decoded_per_second") or 0) > 0, 20)
        assert (figures()["codec"], figures()["width"], figures()["height"]) == ("h264", 320, 240)
        wait_for(lambda: lab.client.get(f"/api/v1/cameras/{camera_id}", headers=lab.operator).json()["status"]
                 == "online", 10)
    finally:
        worker.stop_event.set()
        thread.join(20)
        runner.stop()
        client.close()


def test_wrong_password_is_a_clear_422(lab: Lab) -> None:
    answer = lab.client.post("/api/v1/cameras/probe", json=probe_body(lab, password="not-the-password-4410"),
                             headers=lab.technician)
    assert answer.status_code == 422
    body = answer.json()
    assert body["field"] == "password" and "refused the username or password" in body["detail"]
    assert body["port"] == lab.onvif_port and "not-the-password-4410" not in answer.text


def test_non_onvif_unreachable_and_silent_hosts_are_502_and_504(lab: Lab) -> None:
    closed = free_port()
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)  # a plain web server
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        not_onvif = lab.client.post("/api/v1/cameras/probe", json=probe_body(lab, port=web.server_port),
                                    headers=lab.technician)
    finally:
        web.shutdown()
        web.server_close()
    assert not_onvif.status_code == 502, not_onvif.text
    assert "not an ONVIF device" in not_onvif.json()["detail"]
    unreachable = lab.client.post("/api/v1/cameras/probe", json=probe_body(lab, port=closed), headers=lab.technician)
    assert unreachable.status_code == 502 and "cannot reach" in unreachable.json()["detail"]
    with socket.socket() as silent:  # accepts the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        timeout = lab.client.post("/api/v1/cameras/probe", json=probe_body(lab, port=port, timeout_seconds=1),
                                  headers=lab.technician)
    assert timeout.status_code == 504 and "did not answer within 1 s" in timeout.json()["detail"]


def test_probe_and_discover_need_a_camera_writer_and_valid_input(lab: Lab) -> None:
    assert lab.client.post("/api/v1/cameras/probe", json=probe_body(lab), headers=lab.operator).status_code == 403
    assert lab.client.post("/api/v1/cameras/discover", json={}, headers=lab.investigator).status_code == 403
    for bad in ({"host": "a b", "port": 80}, {"host": "127.0.0.1", "port": 0}, {"port": 80},
                {"host": "127.0.0.1", "timeout_seconds": 0}, {"host": "127.0.0.1", "extra": 1}):
        answer = lab.client.post("/api/v1/cameras/probe", json=bad, headers=lab.technician)
        assert answer.status_code == 422, (bad, answer.text)
    assert lab.client.post("/api/v1/cameras/discover", json={"timeout_seconds": 99},
                           headers=lab.technician).status_code == 422


def test_discovery_lists_the_device_until_it_is_registered(lab_clean: Lab) -> None:
    lab = lab_clean
    found = lab.client.post("/api/v1/cameras/discover", json={"timeout_seconds": 1}, headers=lab.technician)
    assert found.status_code == 200, found.text
    devices = found.json()["devices"]
    assert len(devices) == 1, devices
    device = devices[0]
    assert (device["host"], device["port"], device["name"]) == ("127.0.0.1", lab.onvif_port, "Gate-Camera")
    assert device["endpoint"].startswith("urn:uuid:") and "dn:NetworkVideoTransmitter" in device["types"]
    assert device["registered"] is False

    body = {"name": "gate", "network": "xueliang", "unit_id": lab.county.id, "onvif_host": "127.0.0.1",
            "onvif_port": lab.onvif_port, "main_stream_url": lab.rtsp.url("main")}
    camera_id = lab.client.post("/api/v1/cameras", json=body, headers=lab.technician).json()["id"]
    after = lab.client.post("/api/v1/cameras/discover", json={"timeout_seconds": 1}, headers=lab.technician).json()
    assert after["devices"] == [] and after["answered"] == 1
    listed = lab.client.post("/api/v1/cameras/discover", json={"timeout_seconds": 1, "include_registered": True},
                             headers=lab.technician).json()["devices"]
    assert [(d["registered"], d["registered_camera_ids"]) for d in listed] == [(True, [camera_id])]


def ptz_position(port: int) -> tuple[float, float, float]:
    """Where the emulator's PTZ points now, asked over ONVIF by the test itself."""
    from onvif import ONVIFCamera

    async def ask() -> tuple[float, float, float]:
        camera = ONVIFCamera("127.0.0.1", port, USER, PASSWORD, no_cache=True)
        try:
            await camera.update_xaddrs()
            status = await (await camera.create_ptz_service()).GetStatus({"ProfileToken": "Profile_Main"})
            return (float(status.Position.PanTilt.x), float(status.Position.PanTilt.y), float(status.Position.Zoom.x))
        finally:
            await camera.close()

    return asyncio.run(ask())


def test_ptz_goto_preset_turns_the_camera_and_is_audited(lab_clean: Lab) -> None:
    lab = lab_clean
    body = {"name": "ptz", "network": "xueliang", "unit_id": lab.county.id, "onvif_host": "127.0.0.1",
            "onvif_port": lab.onvif_port, "username": USER, "password": PASSWORD}
    camera_id = lab.client.post("/api/v1/cameras", json=body, headers=lab.technician).json()["id"]
    no_onvif = lab.client.post("/api/v1/cameras", json={**body, "name": "fixed", "onvif_host": None},
                               headers=lab.technician).json()["id"]
    presets = lab.client.get(f"/api/v1/cameras/{camera_id}/ptz/presets", headers=lab.operator)
    assert presets.status_code == 200 and {"gate", "home"} <= {p["token"] for p in presets.json()["presets"]}

    assert ptz_position(lab.onvif_port) == (0.0, 0.0, 0.0)
    moved = lab.client.post(f"/api/v1/cameras/{camera_id}/ptz/goto-preset", json={"preset": "gate"},
                            headers=lab.operator)
    assert moved.status_code == 200 and moved.json() == {"token": "gate", "name": "Gate"}
    assert ptz_position(lab.onvif_port) == (0.5, -0.25, 0.3)
    with lab.services.sessions() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == "camera.ptz_preset")).all()
        assert [(r.actor, r.target_id, r.after) for r in rows] == [("user:op", camera_id, {"preset": "gate"})]

    unknown = lab.client.post(f"/api/v1/cameras/{camera_id}/ptz/goto-preset", json={"preset": "nowhere"},
                              headers=lab.operator)
    assert unknown.status_code == 404 and unknown.json()["field"] == "preset"
    no_address = lab.client.post(f"/api/v1/cameras/{no_onvif}/ptz/goto-preset", json={"preset": "gate"},
                                 headers=lab.operator)
    assert no_address.status_code == 422 and no_address.json()["field"] == "onvif_host"
    assert lab.client.post(f"/api/v1/cameras/{camera_id}/ptz/goto-preset", json={"preset": "gate"},
                           headers=lab.investigator).status_code == 403
    assert lab.client.post(f"/api/v1/cameras/{camera_id}/ptz/goto-preset", json={"preset": "a<b"},
                           headers=lab.operator).status_code == 422
