"""The embedded Redis: persisted with AOF, and cleaned up after a crash of its owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from config.redis_server import EmbeddedRedis


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


def test_orphan_server_and_stale_files_after_a_crash_are_cleaned(tmp_path: Path) -> None:
    folder = tmp_path / "redis"
    # an owner process that starts the server and is then killed -9: the server is orphaned
    code = (
        "import sys, time; from pathlib import Path; from config.redis_server import EmbeddedRedis;"
        f"EmbeddedRedis(Path({str(folder)!r})).start(); print('up', flush=True); time.sleep(60)"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).parents[1])
    assert owner.stdout is not None and owner.stdout.readline().strip() == "up"
    orphan_pid = int((folder / "redis.pid").read_text())
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    os.kill(orphan_pid, 0)  # still running
    server = EmbeddedRedis(folder)
    client = redis.Redis.from_url(server.start())
    assert client.ping()
    new_pid = int((folder / "redis.pid").read_text())
    assert new_pid != orphan_pid
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.waitpid(orphan_pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not Path(f"/proc/{orphan_pid}").exists() or "Z" in Path(f"/proc/{orphan_pid}/stat").read_text().split()[2]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("orphan redis-server still running")
    client.close()
    server.stop()


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
