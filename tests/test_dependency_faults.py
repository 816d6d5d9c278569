"""Acceptance 1 of issue 14: a camera goes offline and a fire is detected while Redis is killed
(and, separately, while PostgreSQL is stopped); once the dependency is back both events are in
alerts, exactly once each, within 30 s, and the registry row shows the camera offline. The
worker's outbox is bounded and survives a worker restart.

Everything is real: an in-process `IngestWorker` + `CameraRunner` (with the detection stage where
a fire is needed) reading a GStreamer RTSP server and a `file:` clip of a real fire scene; an
`AlertEngine` in a thread; a private redis-server with its append-only file, killed with SIGKILL
and started again on the same port; a private PostgreSQL cluster stopped and started (never the
machine's shared one)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from alerts.model import Alert, AlertEvent
from api.services import Services, build_services
from config.redis_names import EVENTS_STREAM
from config.redis_server import connect
from detectors.events import Event
from detectors.rules import CameraRules, RuleEngine
from ingest.camera_runner import CameraRunner, StreamSettings
from ingest.detection import DetectionStage, load_stage
from registry.camera_spec import CameraSpec
from registry.cameras import Camera
from registry.migrate import upgrade
from registry.units import create_unit
from tests.alerting import engine_for
from tests.conftest import MODEL_CACHE, captured_logs, free_port, make_settings, start_redis, wait_for
from tests.detection_worker import make_runner, run_worker
from tests.media import make_clip
from tests.private_pg import PrivatePostgres
from tests.rtsp import RtspServer
from tests.scenes import clip_of, fire_scene
from tests.test_alert_engine_crash import DurableRedis
from tests.test_event_outbox import fill
from tests.test_segments import small_disk

ALERTING = ("camera_offline", "flame", "smoke")  # the kinds of this test that make an alert


@dataclass
class Site:
    """A county with a `gate` camera on an RTSP server and a `fire` camera whose clip is not
    there yet (offline until `light_fire` puts a real fire scene in its place)."""

    services: Services
    rtsp: RtspServer
    ids: dict[str, int]
    fire_path: Path

    def light_fire(self, clip: Path) -> None:
        ready = self.fire_path.with_name("ready.mp4")
        shutil.copy(clip, ready)
        os.replace(ready, self.fire_path)

    def statuses(self) -> dict[str, str]:
        with self.services.sessions() as session:
            return dict(session.execute(select(Camera.name, Camera.status)).all())  # type: ignore[arg-type]

    def alerted(self) -> dict[str, int]:
        """Event id → how many alert_events rows hold it."""
        with self.services.sessions() as session:
            rows = session.execute(select(AlertEvent.event_id, func.count()).group_by(AlertEvent.event_id)).all()
        return {event_id: count for event_id, count in rows}


def make_site(services: Services, folder: Path, gates: int = 1) -> Site:
    clip = make_clip(folder / "gate.h264", seconds=2.0)
    rtsp = RtspServer(free_port(), {"gate": clip}).start()
    (folder / "clips").mkdir()
    fire_path = folder / "clips" / "fire.mp4"
    with services.sessions() as session:
        county = create_unit(session, name="县", code="330199000000", parent_id=None, scope=None)
        urls = {("gate" if gates == 1 else f"gate{i}"): rtsp.url("gate") for i in range(gates)}
        if gates == 1:
            urls["fire"] = fire_path.as_uri()
        ids = {}
        for name, url in urls.items():
            spec = CameraSpec(name=name, network="xueliang", unit_id=county.id, main_stream_url=url,
                              latitude=30.25, longitude=120.16)
            ids[name] = services.registry.create(session, spec, county.path, "test").id
        session.commit()
    return Site(services, rtsp, ids, fire_path)


@contextmanager
def alert_engine(services: Services) -> Iterator[None]:
    engine = engine_for(services, consumer="faults")
    thread = threading.Thread(target=engine.run, kwargs={"block_ms": 100}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        engine.stop_event.set()
        thread.join(20)


def logged_events(logs: StringIO, since: int = 0) -> list[dict[str, object]]:
    """The worker's `event` lines (one per event it raised) after character `since` of the log."""
    lines = [json.loads(line) for line in logs.getvalue()[since:].splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "event" and line.get("logger") == "lookout.runner"]


def lines_named(logs: StringIO, name: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in logs.getvalue().splitlines() if f'"event": "{name}"' in line]


def kinds_of(events: list[dict[str, object]], ids: dict[str, int]) -> set[tuple[str, object]]:
    names = {v: k for k, v in ids.items()}
    return {(names.get(int(e["camera_id"]), "?"), e["kind"]) for e in events}  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def fire_clip(tmp_path_factory: pytest.TempPathFactory, model_files: dict[str, Path]) -> Path:
    stage = load_stage(MODEL_CACHE, ["fire_smoke"], None)
    assert stage is not None
    return clip_of(fire_scene(stage.fire.detector, stage.fire.run), tmp_path_factory.mktemp("fire") / "fire.mp4")


def fire_stage(folder: Path) -> DetectionStage:
    stage = load_stage(MODEL_CACHE, ["fire_smoke", "people"], folder / "snapshots",
                       RuleEngine({}, CameraRules(persistence=(2, 3), cooldown_seconds=3600)))
    assert stage is not None
    return stage


def outage_and_recovery(site: Site, runner: CameraRunner, logs: StringIO, fire_clip: Path,
                        stop: object, start: object) -> None:
    """Before: the chain works (the fire camera's first offline is in alerts). During the outage
    (`stop` … `start`): the gate goes dark and a fire starts. After: every event the worker
    raised that makes an alert is in alerts exactly once within 30 s."""
    wait_for(lambda: site.statuses()["gate"] == "online", 30)
    wait_for(lambda: len(site.alerted()) >= 1, 30)  # the fire camera's offline (no clip yet), through the chain
    mark = len(logs.getvalue())
    stop()  # type: ignore[operator]
    site.rtsp.kill()
    site.light_fire(fire_clip)
    wait_for(lambda: {("gate", "camera_offline"), ("fire", "flame")} <= kinds_of(logged_events(logs, mark), site.ids), 45)
    start()  # type: ignore[operator]
    raised = [e for e in logged_events(logs) if e["kind"] in ALERTING]
    wait_for(lambda: all(site.alerted().get(str(e["event_id"])) == 1 for e in raised), 30)
    wait_for(lambda: site.statuses()["gate"] == "offline", 10)
    assert not lines_named(logs, "worker_tick_failed")  # nothing raised out of a tick: no traceback
    with site.services.sessions() as session:
        offline_alerts = session.scalar(select(func.count()).select_from(Alert).where(
            Alert.kind == "camera_offline", Alert.camera_id == site.ids["gate"]))
    assert offline_alerts == 1
    assert runner.outbox.pending == 0 and runner.outbox.dropped == 0


def test_a_redis_outage_loses_no_event(model_files: dict[str, Path], fire_clip: Path, tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    store = DurableRedis(tmp_path / "redis")
    store.start()
    services = build_services(make_settings(f"sqlite:///{tmp_path / 'registry.db'}", store.url, tmp_path))
    upgrade(services.engine)
    site = make_site(services, tmp_path)
    client = connect(store.url)
    runner = make_runner(services, client, fire_stage(tmp_path), outbox_dir=tmp_path / "outbox")

    def kill() -> None:
        assert store.process is not None
        store.process.send_signal(signal.SIGKILL)
        store.process.wait()

    try:
        with captured_logs() as logs, alert_engine(services), run_worker(services, client, runner):
            outage_and_recovery(site, runner, logs, fire_clip, kill, store.start)
            # during the outage the registry (up) already showed the gate offline; the outbox said so once
            assert len(lines_named(logs, "event_outbox_waiting")) == 1
            assert len(lines_named(logs, "event_outbox_drained")) == 1
    finally:
        site.rtsp.kill()
        services.close()
        if store.process is not None and store.process.poll() is None:
            store.stop()


def test_a_database_outage_loses_no_event_and_the_row_follows(model_files: dict[str, Path], fire_clip: Path,
                                                              tmp_path: Path) -> None:
    pg = PrivatePostgres()
    redis_process, redis_url = start_redis(tmp_path)
    try:
        pg.start()
        services = build_services(make_settings(pg.url, redis_url, tmp_path))
        upgrade(services.engine)
        site = make_site(services, tmp_path)
        client = connect(redis_url)
        runner = make_runner(services, client, fire_stage(tmp_path), outbox_dir=tmp_path / "outbox")
        try:
            with captured_logs() as logs, alert_engine(services), run_worker(services, client, runner):
                outage_and_recovery(site, runner, logs, fire_clip, pg.stop, pg.start)
                assert site.statuses()["fire"] == "online"
                assert len(lines_named(logs, "camera_status_waiting")) == 1
                assert len(lines_named(logs, "camera_status_written")) == 1
        finally:
            site.rtsp.kill()
            services.close()
    finally:
        redis_process.terminate()
        redis_process.wait(10)
        pg.remove()


def test_the_outbox_is_bounded_and_survives_a_worker_restart(tmp_path: Path) -> None:
    """Redis killed; three cameras go dark into an outbox of two: the oldest is dropped, and
    said so. The worker stops while Redis is still down; a new one on the same folder takes the
    file over; Redis back: the two kept events arrive, in order, and are in alerts."""
    (tmp_path / "redis").mkdir()
    store = DurableRedis(tmp_path / "redis")
    store.start()
    services = build_services(make_settings(f"sqlite:///{tmp_path / 'registry.db'}", store.url, tmp_path))
    upgrade(services.engine)
    site = make_site(services, tmp_path, gates=3)
    client = connect(store.url)
    outbox = tmp_path / "outbox"
    try:
        with captured_logs() as logs, alert_engine(services):
            first = make_runner(services, client, None, outbox_dir=outbox, outbox_max_events=2)
            with run_worker(services, client, first):
                wait_for(lambda: set(site.statuses().values()) == {"online"}, 30)
                mark = len(logs.getvalue())
                assert store.process is not None
                store.process.send_signal(signal.SIGKILL)
                store.process.wait()
                site.rtsp.kill()
                wait_for(lambda: set(site.statuses().values()) == {"offline"}, 15)
                wait_for(lambda: len(logged_events(logs, mark)) >= 3, 5)
            raised = [str(e["event_id"]) for e in logged_events(logs, mark)]
            assert first.outbox.closed and first.outbox.pending == 2  # what Redis never took, on disk
            assert first.outbox.dropped == len(raised) - 2
            assert sum(int(line["dropped"]) for line in lines_named(logs, "event_outbox_full")) == len(raised) - 2
            assert len(list(outbox.glob("*.db"))) == 1  # left behind by the stopped worker

            second = make_runner(services, client, None, outbox_dir=outbox)  # Redis still down
            assert [e.event_id for e in second.outbox.peek()] == raised[-2:]
            store.start()
            with run_worker(services, client, second):
                wait_for(lambda: second.outbox.pending == 0, 15)
                stream = [Event.from_fields(f).event_id for _, f in redis.Redis.from_url(
                    store.url, decode_responses=True).xrange(EVENTS_STREAM)]
                assert [i for i in stream if i in raised] == raised[-2:]  # the newest two, in order, once
                wait_for(lambda: all(site.alerted().get(i) == 1 for i in raised[-2:]), 30)
            assert list(outbox.glob("*.db")) == []
    finally:
        site.rtsp.kill()
        services.close()
        if store.process is not None and store.process.poll() is None:
            store.stop()


def test_a_broken_outbox_or_disk_check_never_keeps_a_tick_from_the_disk(sqlite_services: Services,
                                                                        tmp_path: Path) -> None:
    """The disk check is what deletes video on a filling disk: it runs first in every tick, and
    neither a file the outbox cannot read nor a failing check itself raises out of a tick."""
    dead = connect(f"redis://127.0.0.1:{free_port()}/0")  # Redis away: the event stays in the outbox
    runner = CameraRunner(sqlite_services.sessions, sqlite_services.registry.cipher, dead,
                          StreamSettings(segment_dir=tmp_path / "segments", outbox_dir=tmp_path / "outbox"))
    assert runner.storage is not None
    runner.outbox.put([Event(1, "camera_offline", time.time())])
    runner.outbox._db.close()  # its SQLite connection broken under it: every statement raises sqlite3.Error
    with captured_logs() as logs:
        for _ in range(3):
            runner.tick()
            time.sleep(0.6)  # past the outbox's first backoff: it reads again
    assert runner.storage.last is not None  # the disk was measured all the same
    assert len(lines_named(logs, "event_outbox_read_failed")) == 1

    def broken(now: float | None = None) -> list[Event]:  # a fake: a bug of the guard cannot be made on purpose
        raise RuntimeError("the guard's own bug")

    runner.storage.check = broken  # type: ignore[method-assign]
    with captured_logs() as logs:
        runner.tick()
        runner.tick()
    failed = lines_named(logs, "storage_check_failed")
    assert len(failed) == 1 and "the guard's own bug" in str(failed[0]["error"])  # once per episode
    runner.stop()


def test_a_worker_starting_on_a_full_disk_runs_and_guards_it(sqlite_services: Services, tmp_path: Path) -> None:
    """The data disk is full when the worker starts: its runner is built all the same (the
    outbox in memory, said once), and every tick measures the disk, so the guard can free it."""
    dead = connect(f"redis://127.0.0.1:{free_port()}/0")
    with small_disk(tmp_path / "disk", 1) as disk:
        (disk / "segments").mkdir()
        ballast = fill(disk)
        with captured_logs() as logs:
            runner = CameraRunner(sqlite_services.sessions, sqlite_services.registry.cipher, dead,
                                  StreamSettings(segment_dir=disk / "segments", outbox_dir=disk / "outbox"))
            runner.tick()
            runner.outbox.put([Event(1, "camera_offline", time.time())])
        assert runner.outbox.path is None and runner.outbox.pending >= 1
        assert len(lines_named(logs, "event_outbox_unavailable")) == 1
        assert runner.storage is not None and runner.storage.last is not None and not runner.storage.recording
        ballast.unlink()
        runner.stop()  # one last try at the file: the event outlives the worker
        assert len(list((disk / "outbox").glob("*.db"))) == 1
