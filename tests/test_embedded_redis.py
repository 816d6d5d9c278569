"""The embedded Redis: persisted with AOF, and cleaned up after a crash of its owner."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from config.redis_server import EmbeddedRedis, find_redis_server


def test_data_survives_a_restart_through_the_aof(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    client = redis.Redis.from_url(url)
    client.xadd("lookout:events", {"kind": "flame"})
    client.execute_command("CONFIG", "SET", "appendfsync", "always")
    client.xadd("lookout:events", {"kind": "smoke"})
    client.close()
    server.stop()
    again = EmbeddedRedis(tmp_path / "redis")
    client = redis.Redis.from_url(again.start())
    assert [e[1][b"kind"] for e in client.xrange("lookout:events")] == [b"flame", b"smoke"]
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
    assert [e[1][b"kind"] for e in client.xrange("lookout:events")] == [b"flame"]
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
