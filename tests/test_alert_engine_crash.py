"""Acceptance 2 of issue 6: 1,000 events while alert engines are killed with SIGKILL at random
points and Redis is restarted once: every event ends in exactly one alert, none lost, none
counted twice. Real engine processes (`lookout alert-engine`), a real redis-server with its
append-only file, both databases."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from alerts.feed import changes_after
from alerts.model import Alert, AlertEvent
from api.services import Services
from config.redis_names import ALERT_ENGINE_GROUP, EVENTS_STREAM
from config.redis_server import find_redis_server
from detectors.events import Event
from registry.audit import verify_chain
from tests.alerting import FAR, SQUARE, add_camera
from tests.conftest import SECRET, Tree, free_port, wait_for

EVENTS = 1000
ENGINES = 2


class DurableRedis:
    """A redis-server that writes every command to its append-only file before answering, and
    can be stopped and started again on the same port with the same data."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""], stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        wait_for(lambda: _answers(client), 10)
        client.close()

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.BusyLoadingError):
        return False


def _engine(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "api.cli", "alert-engine"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_killed_engines_and_a_redis_restart_lose_and_double_nothing(
        client: TestClient, services: Services, tree: Tree, login, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    seed = int(os.environ.get("LOOKOUT_CHAOS_SEED", random.randrange(1_000_000)))
    chance = random.Random(seed)
    print(f"chaos seed {seed} (LOOKOUT_CHAOS_SEED repeats it)")
    admin = login("admin", tree.county)
    cameras = [add_camera(client, admin, unit, f"cam{i}", SQUARE if i % 3 else FAR)
               for i, unit in enumerate([tree.village_a1, tree.village_a2, tree.village_b1] * 4)]
    store = DurableRedis(tmp_path)
    store.start()
    env = {**os.environ, "LOOKOUT_DATABASE_URL": services.engine.url.render_as_string(hide_password=False),
           "LOOKOUT_REDIS_URL": store.url, "LOOKOUT_SECRET_KEY": SECRET, "LOOKOUT_DATA_DIR": str(tmp_path),
           "LOOKOUT_LOG_LEVEL": "WARNING", "LOOKOUT_ALERTS__CLAIM_IDLE_SECONDS": "1",
           "LOOKOUT_ALERTS__ENGINE_BATCH": "50"}
    engines = [_engine(env) for _ in range(ENGINES)]
    sent: list[str] = []
    producing = threading.Event()

    def produce() -> None:
        producer = redis.Redis.from_url(store.url, decode_responses=True, socket_timeout=5)
        for i in range(EVENTS):
            event = Event(chance.choice(cameras), chance.choice(("flame", "smoke")), time.time(),
                          round(chance.uniform(0.3, 0.99), 3), {"n": i}, event_id=uuid.uuid4().hex)
            while True:  # a producer retries until Redis takes the event (maybe twice: the engine dedups)
                try:
                    producer.xadd(EVENTS_STREAM, event.fields())
                    break
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    time.sleep(0.1)
            sent.append(event.event_id)
            time.sleep(0.005)
        producing.set()

    kills = 0
    try:
        thread = threading.Thread(target=produce)
        thread.start()
        redis_restarted = False
        while not producing.is_set() or kills < 4:
            time.sleep(chance.uniform(0.2, 1.2))
            victim = chance.randrange(ENGINES)
            engines[victim].send_signal(signal.SIGKILL)
            engines[victim].wait()
            kills += 1
            if not redis_restarted and len(sent) > EVENTS // 2:
                store.stop()
                time.sleep(0.5)
                store.start()
                redis_restarted = True
            engines[victim] = _engine(env)
        thread.join()
        assert redis_restarted
        checker = redis.Redis.from_url(store.url, decode_responses=True)

        def settled() -> bool:
            with services.sessions() as session:
                stored = session.scalar(select(func.count()).select_from(AlertEvent))
            return stored == EVENTS and checker.xpending(EVENTS_STREAM, ALERT_ENGINE_GROUP)["pending"] == 0

        wait_for(settled, 120)
    finally:
        for engine in engines:
            engine.kill()
            engine.wait()
        store.stop()
    assert kills >= 4
    with services.sessions() as session:
        stored_ids = set(session.scalars(select(AlertEvent.event_id)))
        assert stored_ids == set(sent) and len(sent) == EVENTS
        per_alert = dict(session.execute(select(AlertEvent.alert_id, func.count()).group_by(AlertEvent.alert_id)).all())
        alerts = session.scalars(select(Alert)).all()
        assert {a.id: a.event_count for a in alerts} == per_alert  # no event counted twice in an alert
        assert sum(per_alert.values()) == EVENTS
        assert len({a.code for a in alerts}) == len(alerts)
        feed = changes_after(session, 0, limit=100_000)
        assert [c.id for c in feed] == list(range(1, len(feed) + 1))
        assert verify_chain(session).intact
