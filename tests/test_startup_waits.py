"""Issue 14, acceptance 3: `lookout serve` started while Redis or the database is not there yet.

Every process (serve, its worker, its alert engine) waits for what it needs and says so in one
structured line per dependency per retry interval: no crash loop, no traceback. The HTTP port
answers /healthz 503 naming what is missing meanwhile, and everything comes up when the
dependency does. Real processes, a real redis-server started late on the port the URL names,
a private PostgreSQL cluster started late (never the machine's shared server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import redis

from config.redis_names import EVENTS_STREAM
from config.redis_server import find_redis_server
from detectors.events import Event
from tests.conftest import children_of, free_port, wait_for
from tests.lookout_cli import admin_token
from tests.private_pg import PrivatePostgres

ROOT = Path(__file__).parents[1]
RETRY = 1.0  # LOOKOUT_DEPENDENCY_RETRY_SECONDS of these tests


def _env(data: Path, **extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")} | {
        "LOOKOUT_DATA_DIR": str(data), "LOOKOUT_LOG_FORMAT": "json", "LOOKOUT_LOG_LEVEL": "INFO",
        "LOOKOUT_DEPENDENCY_RETRY_SECONDS": str(RETRY), **extra}


def _lines(log_file: Path) -> list[dict[str, Any]]:
    """The JSON log lines so far; anything else (a traceback) fails the test."""
    found = []
    text = log_file.read_text(errors="replace")
    for line in text[:text.rfind("\n") + 1].splitlines():  # not a line still being written
        if not line.strip():
            continue
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"a line that is no structured log line: {line!r}") from None
    return found


def _waiting(log_file: Path, dependency: str) -> list[dict[str, Any]]:
    return [line for line in _lines(log_file)
            if line["event"] == "waiting_for_dependency" and line["dependency"] == dependency]


def _health(base: str) -> httpx.Response | None:
    try:
        return httpx.get(f"{base}/healthz", timeout=2)
    except httpx.TransportError:
        return None


def _assert_calm(log_file: Path, dependency: str) -> None:
    """One waiting line per process per retry interval (never two within one), each one
    complete, several tries each (no process gave up), and no traceback anywhere."""
    lines = _lines(log_file)
    assert not [line for line in lines if "exc" in line], "a traceback was logged"
    waiting = _waiting(log_file, dependency)
    times: dict[int, list[float]] = defaultdict(list)
    for line in waiting:
        assert line["level"] == "warning" and line["error"] and line["retry_in"] == RETRY, line
        assert line["command"] in ("serve", "worker", "alert-engine") and line["pid"] > 0, line
        times[line["pid"]].append(datetime.fromisoformat(line["ts"]).timestamp())
    for pid, seen in times.items():
        assert len(seen) >= 2, f"process {pid} tried once"
        gaps = [later - earlier for earlier, later in pairwise(seen)]
        assert min(gaps) >= 0.9 * RETRY, f"process {pid} logged {len(seen)} waiting lines, some closer than the interval"


def _stop(process: subprocess.Popen[bytes], log_file: Path) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    print(log_file.read_text(errors="replace")[-8000:])  # shown when the test fails


def test_serve_waits_for_a_redis_that_is_not_there_yet(tmp_path: Path, model_files: dict[str, Path]) -> None:
    redis_port, port, data = free_port(), free_port(), tmp_path / "data"
    env = _env(data, LOOKOUT_REDIS_URL=f"redis://:s3cret-pass@127.0.0.1:{redis_port}/0")
    token = admin_token(env)
    headers = {"Authorization": f"Bearer {token}"}
    log_file = tmp_path / "serve.log"
    with log_file.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "1"],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    server: subprocess.Popen[bytes] | None = None
    try:
        # serve, its worker and its alert engine all wait (each in its own process)
        wait_for(lambda: {line["command"] for line in _waiting(log_file, "redis")} == {"serve", "worker",
                                                                                      "alert-engine"}, 60)
        time.sleep(4 * RETRY)
        health = _health(base)
        assert health is not None and health.status_code == 503
        assert "redis" in health.json() and health.json()["redis"] != "ok", health.text
        assert process.poll() is None
        _assert_calm(log_file, "redis")
        line = _waiting(log_file, "redis")[-1]
        assert line["url"] == f"redis://:***@127.0.0.1:{redis_port}/0"  # never the password
        assert "s3cret-pass" not in log_file.read_text()
        restarts = [line for line in _lines(log_file) if line["event"] == "child_restarted"]
        assert not restarts, restarts  # no crash loop
        server = subprocess.Popen([find_redis_server(), "--port", str(redis_port), "--bind", "127.0.0.1",
                                   "--requirepass", "s3cret-pass", "--save", "", "--appendonly", "no",
                                   "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
        wait_for(lambda: (response := _health(base)) is not None and response.status_code == 200, 30)
        commands = " ".join(children_of(process.pid).values())
        assert "worker" in commands and "alert-engine" in commands
        wait_for(lambda: {"worker_started", "alert_engine_started"} <= {line["event"] for line in _lines(log_file)}, 30)
        units = httpx.get(f"{base}/api/v1/units", headers=headers).json()
        camera = httpx.post(f"{base}/api/v1/cameras", headers=headers,
                            json={"name": "粮库", "network": "xueliang", "unit_id": units[0]["id"]}).json()
        producer = redis.Redis(port=redis_port, password="s3cret-pass")
        producer.xadd(EVENTS_STREAM, Event(camera["id"], "flame", time.time(), 0.8).fields())
        producer.close()
        wait_for(lambda: len(httpx.get(f"{base}/api/v1/alerts", headers=headers).json()["items"]) == 1, 30)
        assert not [line for line in _lines(log_file) if "exc" in line or line["event"] == "child_restarted"]
        server.terminate()  # Redis gone once serve runs: /healthz says so, with the error
        server.wait(10)
        wait_for(lambda: (response := _health(base)) is not None and response.status_code == 503, 15)
        redis_state = _health(base).json()["redis"]  # type: ignore[union-attr]
        assert redis_state.startswith("error: ConnectionError") and f"127.0.0.1:{redis_port}" in redis_state
    finally:
        _stop(process, log_file)
        if server is not None and server.poll() is None:
            server.terminate()
            server.wait(10)


def test_serve_waits_for_a_database_that_is_not_there_yet(tmp_path: Path) -> None:
    cluster = PrivatePostgres()  # made, not started
    port, data = free_port(), tmp_path / "data"
    env = _env(data, LOOKOUT_DATABASE_URL=cluster.url)
    log_file = tmp_path / "serve.log"
    with log_file.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "0"],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: len(_waiting(log_file, "database")) >= 1, 30)
        wait_for(lambda: _health(base) is not None, 15)  # the port answers while serve waits
        time.sleep(3 * RETRY)
        health = _health(base)
        assert health is not None and health.status_code == 503
        body = health.json()
        assert body["status"] != "ok" and body["database"] != "ok" and "refused" in body["database"], body
        other = httpx.get(f"{base}/api/v1/units", timeout=2)
        assert other.status_code == 503 and "database" in other.json()["detail"]
        assert process.poll() is None
        _assert_calm(log_file, "database")
        assert {line["command"] for line in _waiting(log_file, "database")} == {"serve"}
        assert _waiting(log_file, "database")[-1]["url"] == cluster.url
        cluster.start()
        wait_for(lambda: (response := _health(base)) is not None and response.status_code == 200, 60)
        assert _health(base).json()["database"] == "ok"  # type: ignore[union-attr]
        wait_for(lambda: "alert-engine" in " ".join(children_of(process.pid).values()), 15)
        assert not [line for line in _lines(log_file) if "exc" in line or line["event"] == "child_restarted"]
    finally:
        _stop(process, log_file)
        cluster.remove()


