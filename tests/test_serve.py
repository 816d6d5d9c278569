"""`lookout serve --demo` on a bare data folder: embedded Redis, SQLite, demo county, /healthz."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from config.redis_names import EVENTS_STREAM
from detectors.events import Event
from tests.conftest import children_of, free_port, wait_for
from tests.lookout_cli import admin_token

ROOT = Path(__file__).parents[1]


def test_serve_demo_answers_healthz_with_nothing_set_up(tmp_path: Path, model_files: dict[str, Path]) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")}
    env["LOOKOUT_DATA_DIR"] = str(tmp_path / "data")
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--demo", "--port", str(port), "--workers", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline() + process.stdout.readline()
        token = re.search(r"(lk_[\w-]+)", banner)
        assert token, banner
        headers = {"Authorization": f"Bearer {token.group(1)}"}
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                if health.status_code == 200:  # 503 while serve starts
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert {key: health.json().get(key) for key in ("status", "database", "redis")} == {
            "status": "ok", "database": "ok", "redis": "ok"}
        units = httpx.get(f"http://127.0.0.1:{port}/api/v1/units", headers=headers).json()
        assert [u["depth"] for u in units].count(1) == 2 and [u["depth"] for u in units].count(2) == 4
        cams = httpx.get(f"http://127.0.0.1:{port}/api/v1/cameras", params={"limit": 500}, headers=headers).json()
        assert {c["network"] for c in cams["items"]} >= {"tianwang", "xueliang", "huiyan", "emergency_broadcast",
                                                          "traffic", "urban_management", "department", "other"}
        # the demo cameras play real clips (../shared/media, else tests/assets): the workers stream them
        def online() -> int:
            listed = httpx.get(f"http://127.0.0.1:{port}/api/v1/cameras", params={"status": "online", "limit": 500},
                               headers=headers).json()
            return len(listed["items"])

        deadline = time.monotonic() + 60
        while online() == 0:
            assert time.monotonic() < deadline, "no demo camera came online"
            time.sleep(0.5)
        assert (tmp_path / "data" / "lookout.db").exists()
        assert (tmp_path / "data" / "redis" / "redis.sock").exists()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(20)
    assert not (tmp_path / "data" / "redis" / "redis.sock").exists()  # embedded Redis stopped with it


def test_sigterm_stops_the_embedded_redis_too(tmp_path: Path, model_files: dict[str, Path]) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")}
    env["LOOKOUT_DATA_DIR"] = str(tmp_path / "data")
    process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "0"],
                               cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            break
        except httpx.TransportError:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
    redis_pid = int((tmp_path / "data" / "redis" / "redis.pid").read_text())
    process.terminate()
    assert process.wait(20) == 0
    assert not Path(f"/proc/{redis_pid}").exists() or Path(f"/proc/{redis_pid}/stat").read_text().split()[2] == "Z"


def test_a_killed_alert_engine_is_started_again_and_alerts_go_on(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")} | {
        "LOOKOUT_DATA_DIR": str(tmp_path / "data"), "LOOKOUT_LOG_LEVEL": "WARNING"}

    headers = {"Authorization": f"Bearer {admin_token(env)}"}
    process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "0"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 30)
        [engine] = [pid for pid, command in children_of(process.pid).items() if "alert-engine" in command]
        os.kill(engine, signal.SIGKILL)
        wait_for(lambda: any("alert-engine" in c and p != engine for p, c in children_of(process.pid).items()), 15)
        units = httpx.get(f"{base}/units", headers=headers).json()
        camera = httpx.post(f"{base}/cameras", headers=headers,
                            json={"name": "粮库", "network": "xueliang", "unit_id": units[0]["id"]}).json()
        events = redis.Redis(unix_socket_path=str(tmp_path / "data" / "redis" / "redis.sock"))
        events.xadd(EVENTS_STREAM, Event(camera["id"], "flame", time.time(), 0.8).fields())
        wait_for(lambda: len(httpx.get(f"{base}/alerts", headers=headers).json()["items"]) == 1, 20)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
    assert not children_of(process.pid)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
