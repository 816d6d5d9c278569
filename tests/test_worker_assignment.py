"""Cameras spread over live workers through Redis: placement, failover, registry changes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from api.services import Services
from config.processes import die_with_parent
from config.redis_names import LEASE_PREFIX, WORKERS_SET
from ingest.assignment import rendezvous
from ingest.stream_figures import read_figures
from registry.units import create_unit
from tests.conftest import SECRET, free_port, wait_for
from tests.media import make_clip
from tests.rtsp import RtspServer

ROOT = Path(__file__).parents[1]


def test_rendezvous_is_balanced_and_moves_only_the_dead_workers_cameras() -> None:
    cameras = np.arange(1, 30_001)
    workers = ["a", "b", "c", "d"]
    owners = rendezvous(cameras, workers)
    counts = np.bincount(owners, minlength=4)
    assert counts.min() > 0.9 * len(cameras) / 4 and counts.max() < 1.1 * len(cameras) / 4
    assert (rendezvous(cameras, workers) == owners).all()  # every worker computes the same answer
    survivors = ["a", "b", "d"]
    after = np.array(survivors)[rendezvous(cameras, survivors)]
    before = np.array(workers)[owners]
    moved = before != after
    assert (before[moved] == "c").all() and moved.sum() == counts[2]


def holders(client: redis.Redis, ids: list[int]) -> list[str | None]:
    return [v.decode() if v else None for v in client.mget([f"{LEASE_PREFIX}{i}" for i in ids])]


def start_worker(services: Services, redis_url: str, tmp_path: Path, n: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LOOKOUT_DATABASE_URL": services.settings.resolved_database_url, "LOOKOUT_REDIS_URL": redis_url,
           "LOOKOUT_SECRET_KEY": SECRET, "LOOKOUT_DATA_DIR": str(tmp_path), "LOOKOUT_WORKER__TTL_SECONDS": "6",
           "LOOKOUT_WORKER__STEP_SECONDS": "1", "LOOKOUT_WORKER__STREAM_FIGURES_SECONDS": "0.5",
           "LOOKOUT_WORKER__ANALYSIS_INTERVAL_SECONDS": "0.5", "LOOKOUT_WORKER__ANALYSIS_WIDTH": "160",
           "LOOKOUT_WORKER__ANALYSIS_HEIGHT": "120", "LOOKOUT_WORKER__STREAM_READ_TIMEOUT_SECONDS": "3",
           "LOOKOUT_WORKER__DETECTORS": "[]"}  # assignment only: no models
    log = (tmp_path / f"worker{n}.log").open("wb")  # structured logs, kept for a failing run
    return subprocess.Popen([sys.executable, "-m", "api.cli", "worker"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)


def test_killed_worker_cameras_stream_again_within_15s_and_api_changes_reach_workers_within_5s(
    sqlite_services: Services, redis_url: str, tmp_path: Path
) -> None:
    from datetime import timedelta

    from registry.users import Role, User, hash_password, issue_token

    with sqlite_services.sessions() as session:
        county = create_unit(session, name="县", code="330199000000", parent_id=None, scope=None)
        user = User(username="tech", role=Role.technician.value, unit_id=county.id, password_hash=hash_password("x" * 8))
        session.add(user)
        session.flush()
        token = issue_token(session, user, timedelta(hours=1))[0]
        session.commit()
    server = RtspServer(free_port(), {"live": make_clip(tmp_path / "live.h264")}).start()
    client = TestClient(create_app(sqlite_services))
    headers = {"Authorization": f"Bearer {token}"}

    def camera(name: str) -> int:
        return int(client.post("/api/v1/cameras", headers=headers, json={
            "name": name, "network": "xueliang", "unit_id": county.id, "main_stream_url": server.url("live")}).json()["id"])

    ids = [camera(f"cam{i}") for i in range(12)]
    r = redis.Redis.from_url(redis_url)

    def streaming_on(worker_id: str, cameras: list[int], since: float) -> bool:
        """Each camera's figures come from `worker_id`, measured after `since`, with frames decoded."""
        now = read_figures(r, cameras)
        return all(c in now and now[c]["worker_id"] == worker_id and now[c]["at"] > since and now[c]["connected"]
                   and (now[c]["frames_decoded"] or 0) > 0 for c in cameras)

    workers = [start_worker(sqlite_services, redis_url, tmp_path, n) for n in range(2)]
    try:
        def shared() -> bool:  # every camera held, and both workers hold a share
            now = holders(r, ids)
            return None not in now and len(set(now)) == 2

        wait_for(shared, 30)
        before = holders(r, ids)
        victim_id = str(before[0])
        victim = next(w for w in workers if f"-{w.pid}-" in victim_id)
        survivor_id = str(next(h for h in before if h != victim_id))
        moved = [c for c, h in zip(ids, before) if h == victim_id]
        wait_for(lambda: streaming_on(victim_id, moved, 0) and streaming_on(survivor_id, list(set(ids) - set(moved)), 0), 20)
        killed = time.time()
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert wait_for(lambda: streaming_on(survivor_id, moved, killed), 15) < 15
        assert set(holders(r, ids)) == {survivor_id}

        posted = time.time()
        added = camera("new")
        assert wait_for(lambda: streaming_on(survivor_id, [added], posted), 5) < 5
        client.patch(f"/api/v1/cameras/{added}", headers=headers, json={"enabled": False})
        assert wait_for(lambda: holders(r, [added]) == [None], 5) < 5
        client.delete(f"/api/v1/cameras/{ids[0]}", headers=headers)
        assert wait_for(lambda: holders(r, [ids[0]]) == [None], 5) < 5
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(15)
        server.kill()
    assert holders(r, ids[1:]) == [None] * (len(ids) - 1)  # a clean stop gives every lease back
    assert r.zcard(WORKERS_SET) == 1  # only the killed worker's stale heartbeat is left
