"""A worker streaming its cameras: status and events from real streams, errors kept per camera."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import redis
from sqlalchemy import select, update

from api.services import Services
from config.redis_names import EVENTS_STREAM
from config.redis_server import find_redis_server
from detectors.camera_health import HealthRules
from detectors.events import Event
from ingest.camera_runner import CameraRunner, StreamSettings
from ingest.worker import IngestWorker
from registry.camera_spec import CameraSpec
from registry.cameras import Camera
from registry.units import create_unit
from tests.conftest import captured_logs, free_port, start_redis, wait_for
from tests.media import make_clip
from tests.rtsp import RtspServer

PASSWORD = "cam-secret-8812"






def test_statuses_errors_and_events_from_real_streams(sqlite_services: Services, redis_url: str, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "a.h264")
    server = RtspServer(free_port(), {"h264": clip}).start()
    guarded = RtspServer(free_port(), {"h264": clip}, auth=f"admin:{PASSWORD}").start()
    # a port held bound and never listening: connections to it are refused, and no server started
    # later can take it (a port from free_port() could be handed to one of them meanwhile)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    mp4 = make_clip(tmp_path / "b.mp4", seconds=2.0)
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video\n" * 100)
    mpeg4 = make_clip(tmp_path / "old-dvr.mp4", codec="mpeg4", seconds=2.0)  # a valid file, a codec we don't take
    urls = {
        "rtsp": (server.url("h264"), None),
        "file": ("rtsp://127.0.0.1:1/main-unused", mp4.as_uri()),  # the sub stream is the one read
        "unreachable": (f"rtsp://127.0.0.1:{closed.getsockname()[1]}/x", None),
        "not_video": (not_video.as_uri(), None),
        "no_such_mount": (f"rtsp://127.0.0.1:{server.port}/nope", None),
        "auth_ok": (guarded.url("h264"), None),
        "auth_bad": (guarded.url("h264"), None),
        "unsupported_codec": (mpeg4.as_uri(), None),
        "malformed": (server.url("h264"), None),  # broken below, behind the API's back
    }
    with sqlite_services.sessions() as session:
        county = create_unit(session, name="县", code="330199000000", parent_id=None, scope=None)
        ids = {}
        for name, (main, sub) in urls.items():
            password = "wrong-password-5531" if name == "auth_bad" else PASSWORD
            spec = CameraSpec(name=name, network="xueliang", unit_id=county.id, main_stream_url=main,
                              sub_stream_url=sub, username="admin", password=password)
            ids[name] = sqlite_services.registry.create(session, spec, county.path, "test").id
        # as if stored before validation existed, or edited in the database by hand
        session.execute(update(Camera).where(Camera.id == ids["malformed"]).values(
            main_stream_url=f"rtsp://127.0.0.1:{server.port}0000/h264"))
        session.commit()

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    runner = CameraRunner(sqlite_services.sessions, sqlite_services.registry.cipher, client,
                          StreamSettings(size=(160, 120), interval=0.5, read_timeout=3.0, open_timeout=3.0,
                                         segment_dir=tmp_path / "segments", segment_seconds=2.0,
                                         media_dirs=(tmp_path,)),  # the file: cameras play clips from tmp_path
                          HealthRules(offline_after=3.0, online_hold=1.0))
    batches: list[int] = []

    def tick() -> None:
        batches.append(len(runner.tick()))

    worker = IngestWorker(sqlite_services.sessions, client, ttl=6, step_seconds=1, on_assign=runner.assign,
                          on_release=runner.release, on_change=runner.restart, tick=tick, tick_seconds=0.5)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()

    def status() -> dict[str, tuple[str, str | None]]:
        with sqlite_services.sessions() as session:
            rows = session.execute(select(Camera.name, Camera.status, Camera.last_error)).all()
        return {name: (st, err) for name, st, err in rows}

    def events() -> list[Event]:
        return [Event.from_fields(fields) for _, fields in client.xrange(EVENTS_STREAM)]

    try:
        wait_for(lambda: all(status()[n][0] == "online" for n in ("rtsp", "file", "auth_ok")), 20)
        bad = ("unreachable", "not_video", "no_such_mount", "auth_bad", "unsupported_codec", "malformed")
        wait_for(lambda: all(status()[n][0] == "offline" for n in bad), 20)
        now = status()
        assert "refused" in now["unreachable"][1].lower() or "connection" in now["unreachable"][1].lower()
        assert "invalid data" in now["not_video"][1].lower()
        assert "404" in now["no_such_mount"][1] or "not found" in now["no_such_mount"][1].lower()
        assert now["auth_bad"][1] == "authentication failed (401)"
        assert "unsupported video codec mpeg4" in now["unsupported_codec"][1]
        assert now["malformed"][1] == "malformed stream URL: URL port must be a number from 1 to 65535"
        wait_for(lambda: max(batches) >= 2, 15)  # the streaming cameras' frames come as one batch per tick
        assert runner.last_quality is not None and np.isfinite(runner.last_quality.luma).all()
        offline_events = {e.camera_id for e in events() if e.kind == "camera_offline"}
        assert offline_events == {ids[n] for n in bad}

        server.kill()
        killed = time.monotonic()
        wait_for(lambda: status()["rtsp"][0] == "offline", 3.0 + 3.0)
        assert time.monotonic() - killed < 6.0
        assert status()["file"][0] == status()["auth_ok"][0] == "online"  # the others are unaffected
        server.start()
        wait_for(lambda: status()["rtsp"][0] == "online", 10 + 1.0 + 1.0)
        def kinds() -> list[str]:
            return [e.kind for e in events() if e.camera_id == ids["rtsp"]]

        wait_for(lambda: len(kinds()) >= 2, 5)  # the event follows the status write, it is not in its commit
        assert kinds() == ["camera_offline", "camera_online"]
        for text in [str(v) for v in status().values()] + [str(e) for e in events()]:
            assert PASSWORD not in text
        check_figures_and_online_rate(sqlite_services, ids, county.id)
        from ingest.segments import read_index

        wait_for(lambda: len(read_index(tmp_path / "segments" / str(ids["file"]))) >= 2, 10)  # video kept for clips
        assert read_index(tmp_path / "segments" / str(ids["unreachable"])) == []
    finally:
        worker.stop_event.set()
        thread.join(20)
        runner.stop()
        server.kill()
        guarded.kill()
        closed.close()
    assert not thread.is_alive() and not runner.readers


def check_figures_and_online_rate(sqlite_services: Services, ids: dict[str, int], county_id: int) -> None:
    """The API shows the worker's figures and the online rate, through real HTTP routes."""
    from datetime import timedelta

    from fastapi.testclient import TestClient

    from api.app import create_app
    from registry.users import Role, User, hash_password, issue_token

    with sqlite_services.sessions() as session:
        user = User(username="op", role=Role.operator.value, unit_id=county_id, password_hash=hash_password("x" * 8))
        session.add(user)
        session.flush()
        headers = {"Authorization": f"Bearer {issue_token(session, user, timedelta(hours=1))[0]}"}
        session.commit()
    client = TestClient(create_app(sqlite_services))

    def figures() -> dict:  # type: ignore[type-arg]
        return client.get(f"/api/v1/cameras/{ids['rtsp']}/stream", headers=headers).json()

    wait_for(lambda: figures().get("connected") is True and (figures().get("packets_per_second") or 0) > 0, 15)
    live = figures()
    assert live["codec"] == "h264" and live["connected"] is True
    assert 2 <= live["packets_per_second"] <= 50  # 10 fps, with bursts around a reconnect
    assert live["keyframe_interval_seconds"] == 1.0
    assert live["bitrate_kbps"] > 0 and live["reconnects"] >= 1
    online = client.get(f"/api/v1/units/{county_id}/online", headers=headers).json()
    assert (online["cameras"], online["online"], online["offline"]) == (9, 3, 6)
    assert online["online_rate"] == round(3 / 9, 4)
    metrics = client.get("/metrics").text
    assert f'lookout_unit_online_rate{{unit_id="{county_id}"}} {3 / 9}' in metrics
    assert f'lookout_stream_packets_per_second{{camera_id="{ids["rtsp"]}"}}' in metrics
    for name in ("decode_errors", "recent_decode_errors"):  # their values: tests/test_broken_video.py
        assert f'lookout_stream_{name}{{camera_id="{ids["rtsp"]}"}}' in metrics


def test_a_registry_feed_outage_is_said_once_and_its_end_once(sqlite_services: Services, tmp_path: Path) -> None:
    """Redis killed under a running worker (ticking every 50 ms): one `registry_feed_unavailable`
    for the outage, not one per loop pass, and one `registry_feed_restored` once Redis is back."""
    process, url = start_redis(tmp_path)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    client = redis.Redis.from_url(url, decode_responses=True)
    worker = IngestWorker(sqlite_services.sessions, client, ttl=6, step_seconds=0.2, tick=lambda: None,
                          tick_seconds=0.05)
    thread = threading.Thread(target=worker.run, daemon=True)
    restarted = None

    def named(logs: object, name: str) -> list[dict[str, object]]:
        lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]  # type: ignore[attr-defined]
        return [line for line in lines if line.get("event") == name]

    try:
        with captured_logs() as logs:
            thread.start()
            wait_for(lambda: bool(named(logs, "worker_started")), 10)
            process.kill()
            process.wait()
            wait_for(lambda: len(named(logs, "worker_step_failed")) >= 4, 10)  # many loop passes meanwhile
            restarted = subprocess.Popen([find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save",
                                          "", "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
            wait_for(lambda: bool(named(logs, "registry_feed_restored")), 10)
            time.sleep(0.3)  # a few passes with Redis back: no more lines
        assert len(named(logs, "registry_feed_unavailable")) == 1
        restored = named(logs, "registry_feed_restored")
        assert len(restored) == 1 and float(restored[0]["down_s"]) > 0  # type: ignore[arg-type]
    finally:
        worker.stop_event.set()
        thread.join(20)
        for server in (process, restarted):
            if server is not None and server.poll() is None:
                server.terminate()
                server.wait(10)
