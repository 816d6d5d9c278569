"""The embedded Redis: persisted with AOF, and cleaned up after a crash of its owner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis
import sqlalchemy

from config.processes import Children
from config.redis_names import EVENTS_STREAM, WORKERS_SET
from config.redis_server import EmbeddedRedis, find_redis_server
from detectors.events import Event
from tests.alerting import SseListener
from tests.conftest import captured_logs, children_of, free_port, wait_for
from tests.lookout_cli import admin_token

ROOT = Path(__file__).parents[1]


def test_data_survives_a_restart_through_the_aof(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    client = redis.Redis.from_url(url)
    client.xadd(EVENTS_STREAM, {"kind": "flame"})
    client.execute_command("CONFIG", "SET", "appendfsync", "always")
    client.xadd(EVENTS_STREAM, {"kind": "smoke"})
    client.close()
    server.stop()
    again = EmbeddedRedis(tmp_path / "redis")
    client = redis.Redis.from_url(again.start())
    assert [e[1][b"kind"] for e in client.xrange(EVENTS_STREAM)] == [b"flame", b"smoke"]
    client.close()
    again.stop()
    assert not (tmp_path / "redis" / "redis.sock").exists()


def test_a_killed_owner_takes_its_redis_along_and_the_data_stays(tmp_path: Path) -> None:
    folder = tmp_path / "redis"
    code = (
        "import time; from pathlib import Path; import redis; from config.redis_server import EmbeddedRedis, find_redis_server;"
        f"url = EmbeddedRedis(Path({str(folder)!r})).start(); c = redis.Redis.from_url(url);"
        "c.execute_command('CONFIG', 'SET', 'appendfsync', 'always'); c.xadd('lookout:events', {'kind': 'flame'});"
        "print('up', flush=True); time.sleep(60)"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).parents[1])
    assert owner.stdout is not None and owner.stdout.readline().strip() == "up"
    server_pid = int((folder / "redis.pid").read_text())
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    wait_gone(server_pid)
    again = EmbeddedRedis(folder)
    client = redis.Redis.from_url(again.start())
    assert [e[1][b"kind"] for e in client.xrange(EVENTS_STREAM)] == [b"flame"]
    client.close()
    again.stop()


def test_a_surviving_server_from_an_earlier_crash_is_stopped(tmp_path: Path) -> None:
    folder = tmp_path / "redis"
    folder.mkdir()
    survivor = subprocess.Popen(
        [find_redis_server(), "--port", "0", "--unixsocket", str(folder / "redis.sock"), "--dir", str(folder),
         "--pidfile", str(folder / "redis.pid"), "--save", ""], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not (folder / "redis.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    server = EmbeddedRedis(folder)
    client = redis.Redis.from_url(server.start())
    assert client.ping()
    assert survivor.wait(10) is not None  # the survivor was stopped
    assert int((folder / "redis.pid").read_text()) != survivor.pid
    client.close()
    server.stop()


def wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        stat = Path(f"/proc/{pid}/stat").read_text().split()
        if stat[2] == "Z":
            return
        assert time.monotonic() < deadline, f"redis-server {pid} still running"
        time.sleep(0.05)


def test_stale_socket_and_pidfile_without_a_process(tmp_path: Path) -> None:
    folder = tmp_path / "redis"
    folder.mkdir()
    (folder / "redis.pid").write_text("999999\n")
    (folder / "redis.sock").write_text("")
    server = EmbeddedRedis(folder)
    client = redis.Redis.from_url(server.start())
    assert client.ping()
    client.close()
    server.stop()


def test_a_killed_server_is_started_again_with_its_data_and_clients_reconnect(tmp_path: Path) -> None:
    """The supervisor of `lookout serve` (config.processes.Children) starts a server that died
    again on the same socket with the same AOF; a client made before the kill just goes on."""
    server = EmbeddedRedis(tmp_path / "redis")
    client = redis.Redis.from_url(server.start())
    client.xadd(EVENTS_STREAM, {"kind": "flame"})
    children = Children(dict(os.environ), check_seconds=0.1)
    children.supervise(server)
    children.watching()
    try:
        with captured_logs() as logs:
            os.kill(int((tmp_path / "redis" / "redis.pid").read_text()), signal.SIGKILL)
            wait_for(lambda: _pings(client), 15)

            def restarts() -> list[int]:
                return [line["exit_code"] for line in map(json.loads, logs.getvalue().splitlines())
                        if line["event"] == "embedded_redis_restarted"]

            wait_for(lambda: bool(restarts()), 5)
        assert restarts() == [-signal.SIGKILL]
        assert [e[1][b"kind"] for e in client.xrange(EVENTS_STREAM)] == [b"flame"]
    finally:
        client.close()
        children.stop()
        server.stop()
    assert not (tmp_path / "redis" / "redis.sock").exists()


def test_a_server_that_cannot_start_again_is_tried_less_and_less_often(tmp_path: Path) -> None:
    """A damaged AOF: the restart fails, is logged with its growing retry interval (no line per
    check), and succeeds once the file is repaired."""
    server = EmbeddedRedis(tmp_path / "redis")
    client = redis.Redis.from_url(server.start())
    client.execute_command("CONFIG", "SET", "appendfsync", "always")
    client.xadd(EVENTS_STREAM, {"kind": "flame"})
    os.kill(int((tmp_path / "redis" / "redis.pid").read_text()), signal.SIGKILL)
    wait_for(lambda: server.exit_code() is not None, 10)
    [aof] = (tmp_path / "redis" / "appendonlydir").glob("*.incr.aof")
    intact = aof.read_bytes()
    aof.write_bytes(b"*9\r\n$3\r\nbad\r\n" + intact)
    children = Children(dict(os.environ), check_seconds=0.05)
    children.supervise(server)
    try:
        with captured_logs() as logs:
            children.watching()

            def failures() -> list[float]:
                return [line["retry_in"] for line in map(json.loads, logs.getvalue().splitlines())
                        if line["event"] == "server_restart_failed"]

            wait_for(lambda: len(failures()) >= 4, 30)
            assert failures()[:4] == [0.05, 0.1, 0.2, 0.4]
            aof.write_bytes(intact)
            wait_for(lambda: _pings(client), 30)
        assert [e[1][b"kind"] for e in client.xrange(EVENTS_STREAM)] == [b"flame"]
    finally:
        client.close()
        children.stop()
        server.stop()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_serve_starts_its_killed_redis_again_and_no_event_is_lost(tmp_path: Path,
                                                                   model_files: dict[str, Path]) -> None:
    """Issue 14, acceptance 2: `kill -9` of the embedded redis-server of a running `lookout serve`.
    Serve starts it again on the same socket with the same AOF; /healthz is 200 again within
    15 s; the API, its feed hub, the worker and the alert engine reconnect by themselves (the
    same processes: none of them dies); the events alerted before the kill and those sent after
    it are each in exactly one alert."""
    port, data = free_port(), tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")} | {
        "LOOKOUT_DATA_DIR": str(data), "LOOKOUT_LOG_LEVEL": "WARNING", "LOOKOUT_WORKER__STEP_SECONDS": "0.5"}
    token = admin_token(env)
    headers = {"Authorization": f"Bearer {token}"}
    log_file = tmp_path / "serve.log"
    with log_file.open("wb") as log_out:
        process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "1"],
                                   cwd=ROOT, env=env, stdout=log_out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    sent: list[str] = []
    try:
        wait_for(lambda: _health(base) == 200, 60)
        units = httpx.get(f"{base}/api/v1/units", headers=headers).json()
        camera = httpx.post(f"{base}/api/v1/cameras", headers=headers,
                            json={"name": "粮库", "network": "xueliang", "unit_id": units[0]["id"]}).json()
        socket_path = data / "redis" / "redis.sock"
        producer = redis.Redis(unix_socket_path=str(socket_path), decode_responses=True)
        for _ in range(3):
            sent.append(_send(producer, camera["id"], "flame"))
        wait_for(lambda: _stored(data, sent) == set(sent), 30)  # the engine made alerts of them
        children = children_of(process.pid)
        server_pid = int((data / "redis" / "redis.pid").read_text())
        assert server_pid in children
        os.kill(server_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: _health(base) == 200, 15)
        print(f"/healthz 200 again {time.monotonic() - killed_at:.2f} s after the kill")
        assert int((data / "redis" / "redis.pid").read_text()) != server_pid
        # the alert feed of the API (its hub reads the doorbell in Redis) goes on: a change made now
        # reaches a live follower (one that never resumes from the database: no Last-Event-ID)
        follower = SseListener(f"{base}/api/v1/alerts/stream", headers)
        follower.start()
        restarted_at = time.time()
        deadline = time.monotonic() + 30
        while not any(change["alert"]["kind"] == "smoke" for change in follower.changes):
            assert time.monotonic() < deadline, "the API's alert feed does not deliver since Redis came back"
            sent.append(_send(producer, camera["id"], "smoke"))  # until one lands while the follower listens
            time.sleep(1.0)
        follower.stop.set()
        wait_for(lambda: _stored(data, sent) == set(sent), 30)
        # the worker beats again through its own client
        wait_for(lambda: bool(producer.zrangebyscore(WORKERS_SET, restarted_at, "+inf")), 15)
        still = children_of(process.pid)
        assert {pid for pid, command in children.items() if "api.cli" in command} <= set(still), \
            "a worker or the alert engine died with Redis"
        producer.close()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        finally:
            process.kill()
            print(log_file.read_text()[-6000:])
    logged = [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]
    restarts = [line for line in logged if line["event"] == "embedded_redis_restarted"]
    assert len(restarts) == 1 and restarts[0]["exit_code"] == -signal.SIGKILL
    engine = sqlalchemy.create_engine(f"sqlite:///{data / 'lookout.db'}")
    with engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text("SELECT event_id, alert_id FROM alert_events")).all()
        counts = dict(conn.execute(sqlalchemy.text("SELECT id, event_count FROM alerts")).all())
    engine.dispose()
    assert set(sent) <= {event_id for event_id, _ in rows}  # every event, once (the event id is the key)
    per_alert: dict[int, int] = {}
    for _, alert_id in rows:
        per_alert[alert_id] = per_alert.get(alert_id, 0) + 1
    assert per_alert == {alert_id: n for alert_id, n in counts.items() if n}  # none counted twice


def _send(producer: redis.Redis, camera_id: int, kind: str) -> str:
    event = Event(camera_id, kind, time.time(), 0.8)
    producer.xadd(EVENTS_STREAM, event.fields())
    return event.event_id


def _stored(data: Path, wanted: list[str]) -> set[str]:
    """Which of `wanted` the alert engine has put in alerts (read from the SQLite file)."""
    engine = sqlalchemy.create_engine(f"sqlite:///{data / 'lookout.db'}")
    try:
        with engine.connect() as conn:
            found = conn.execute(sqlalchemy.text("SELECT event_id FROM alert_events")).scalars().all()
    finally:
        engine.dispose()
    return set(found) & set(wanted)


def _health(base: str) -> int:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code
    except httpx.TransportError:
        return 0
