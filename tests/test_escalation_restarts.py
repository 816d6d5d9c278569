"""Acceptance 3 of issue 6: a missed acknowledge deadline escalates the alert to the parent unit
and the parent hears of it, also when the API and the alert engine are killed in between.

Real processes (`lookout serve`, `lookout alert-engine`), a real redis-server, SQLite; the
township operator listens on the SSE feed for alerts addressed to the township only."""

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
import yaml

from config.redis_names import EVENTS_STREAM
from detectors.events import Event
from tests.alerting import SseListener
from tests.conftest import SECRET, free_port, start_redis, wait_for

ROOT = Path(__file__).parents[1]
ACK_SECONDS = 3.0


def _deadlines() -> dict[str, dict[str, dict[str, float]]]:
    short = {"acknowledge_seconds": ACK_SECONDS, "resolve_seconds": 3600}
    return {level: {s: short for s in ("info", "minor", "major", "critical")}
            for level in ("county", "township", "village")}


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "api.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _token(output: str) -> dict[str, str]:
    found = re.search(r"token: (lk_[\w-]+)", output)
    assert found, output
    return {"Authorization": f"Bearer {found.group(1)}"}


class Service:
    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env, self.port = env, port
        self.api: subprocess.Popen[bytes] | None = None
        self.engine: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.engine = subprocess.Popen([sys.executable, "-m", "api.cli", "alert-engine"], env=self.env, cwd=ROOT,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.api = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(self.port),
                                     "--workers", "0", "--no-alert-engine"], env=self.env, cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._up, 30)

    def _up(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        for process in (self.api, self.engine):
            if process is not None:
                process.send_signal(signal.SIGKILL)
                process.wait()


def test_a_missed_deadline_escalates_and_notifies_the_parent_across_restarts(tmp_path: Path) -> None:
    redis_process, redis_url = start_redis(tmp_path)
    config = tmp_path / "lookout.yaml"
    config.write_text(yaml.safe_dump({"alerts": {"deadlines": _deadlines(), "sweep_seconds": 0.2}}))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")} | {
        "LOOKOUT_CONFIG": str(config), "LOOKOUT_DATA_DIR": str(tmp_path / "data"), "LOOKOUT_REDIS_URL": redis_url,
        "LOOKOUT_SECRET_KEY": SECRET, "LOOKOUT_LOG_LEVEL": "WARNING"}
    _cli(env, "unit", "add", "示范县", "330199000000")
    _cli(env, "unit", "add", "城关镇", "330199001000", "--parent", "330199000000")
    _cli(env, "unit", "add", "东门村", "330199001001", "--parent", "330199001000")
    admin = _token(_cli(env, "user", "add", "chief", "--role", "admin", "--unit", "330199000000"))
    township = _token(_cli(env, "user", "add", "town-op", "--role", "operator", "--unit", "330199001000"))
    service = Service(env, port)
    base = f"http://127.0.0.1:{port}/api/v1"
    listener = SseListener(f"{base}/alerts/stream", township, addressed_only="true", after=0)
    try:
        service.start()
        units = {u["code"]: u["id"] for u in httpx.get(f"{base}/units", headers=admin).json()}
        camera = httpx.post(f"{base}/cameras", headers=admin, json={
            "name": "粮库", "network": "xueliang", "unit_id": units["330199001001"]}).json()
        listener.start()
        wait_for(lambda: listener.connections == 1, 10)
        feed = redis.Redis.from_url(redis_url, decode_responses=True)
        feed.xadd(EVENTS_STREAM, Event(camera["id"], "flame", time.time(), 0.8).fields())
        wait_for(lambda: len(httpx.get(f"{base}/alerts", headers=admin).json()["items"]) == 1, 10)
        [alert] = httpx.get(f"{base}/alerts", headers=admin).json()["items"]
        assert alert["level_unit_id"] == units["330199001001"] and alert["addressed"] == [units["330199001001"]]
        service.kill()  # the API and the engine die before the deadline...
        time.sleep(ACK_SECONDS + 1)  # ...and it passes while nothing runs
        assert listener.changes == []  # the village's alert was never addressed to the township
        service.start()
        wait_for(lambda: any(c["change"] == "escalated" for c in listener.changes), 20)
        [escalated] = listener.changes
        assert escalated["alert"]["id"] == alert["id"]
        assert escalated["alert"]["level_unit_id"] == units["330199001000"]
        assert escalated["alert"]["addressed"] == [units["330199001000"]]
        assert escalated["actor"] == "system:deadline" and listener.connections >= 2
        history = httpx.get(f"{base}/alerts/{alert['id']}", headers=admin).json()["history"]
        # the township's own 3 s deadline may already have taken it on to the county: that is later
        assert [h["action"] for h in history][:2] == ["alert.create", "alert.escalate"]
        assert all(h["action"] == "alert.escalate" and h["after"]["level_unit_id"] == units["330199000000"]
                   for h in history[2:]), history
        assert "acknowledge deadline passed at the village level" in history[1]["after"]["reason"]
    finally:
        listener.stop.set()
        service.kill()
        redis_process.terminate()
        redis_process.wait(10)
