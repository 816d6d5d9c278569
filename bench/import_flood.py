"""A million-row CSV import through a real `lookout serve`, with alert work going on beside it
(issue 13, hole 9 / acceptance 3: < 300 MB added to the server, an alert action waits < 0.5 s).

The service runs as `make run` runs it: `lookout serve --workers 0` (the API, with its alert
engine as a subprocess) on SQLite and a private redis-server. An operator works one real
alert (opened by a flame event through the engine) in a loop — acknowledge, dispatch,
false alarm, reopen, one action every `--action-interval` s — while a county technician
uploads the file to `POST /api/v1/cameras/import`. Measured: the API process's resident
memory above its level before the upload (sampled every 50 ms), each alert action's round
trip before and during the import, the import's time and the size of its response.

Side by side, in the same run: the naive import, i.e. the code before issue 13 (the whole file
read into memory, one transaction for every row, the audit chain's lock held to the end),
checked out at `--naive-commit` in a temporary `git worktree` that is removed afterwards.

The file (generated, seeded) has 1 % bad rows and is kept under the old code's 128 MiB
upload limit: name, network, unit, coordinates, one stream URL, a GB/T id on 70 % of rows,
credentials on 30 %, tags. Prints and writes bench/out/import_flood.json.

    .venv/bin/python bench/import_flood.py [--rows 1000000] [--no-naive] [--postgres URL]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
NAIVE_COMMIT = "751ef49"  # the last commit before issue 13's fixes
HEADER = ["name", "network", "unit_code", "longitude", "latitude", "main_stream_url", "device_id", "username",
          "password", "tags", "enabled"]
NETWORKS = ["huiyan"] * 6 + ["xueliang"] * 3 + ["tianwang"]
TAGS = ["学校", "广场", "市场", "加油站", "林区", "河道", "路口"]

#: Run inside the tree being measured (its own code and migrations): units, two users, one camera.
SEED = r"""
import json, sys
from datetime import timedelta
from registry.users import Role, User, hash_password, issue_token
from registry.migrate import upgrade
from api.services import build_services
from bench.camera_csv import create_units
from config.settings import Settings
from registry.camera_spec import CameraSpec
data_dir, redis_url, key = sys.argv[1:4]
services = build_services(Settings(data_dir=data_dir, redis_url=redis_url, secret_key=key))
upgrade(services.engine)
with services.sessions() as session:
    units = create_units(session)
    county, village = units["330199000000"], units["330199001001"]
    tokens = {}
    for name, role, unit in (("tech", Role.technician, county), ("duty", Role.operator, county)):
        user = User(username=f"{name}-bench", role=role.value, unit_id=unit.id, password_hash=hash_password("x" * 12))
        session.add(user)
        session.flush()
        tokens[name] = issue_token(session, user, timedelta(hours=6))[0]
    camera = services.registry.create(session, CameraSpec(name="bench-fire", network="xueliang", unit_id=village.id),
                                      county.path, "bench")
    session.commit()
    print(json.dumps({"tokens": tokens, "camera_id": camera.id}))
services.close()
"""


def write_csv(path: Path, count: int, bad_every: int = 100, seed: int = 11) -> list[int]:
    """`count` rows streamed to `path`; the lines of the bad ones (every `bad_every`-th)."""
    from bench.camera_csv import village_codes

    rng = random.Random(seed)
    villages = village_codes()
    bad = []
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        for i in range(1, count + 1):
            creds = rng.random() < 0.3
            row = [f"点{i:07d}", rng.choice(NETWORKS), rng.choice(villages), f"{120.1 + rng.uniform(-.5, .5):.5f}",
                   f"{30.2 + rng.uniform(-.5, .5):.5f}", f"rtsp://10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/ch1",
                   f"3301990000132{i:07d}" if rng.random() < 0.7 else "", "admin" if creds else "",
                   f"pw{rng.randint(10**5, 10**6)}" if creds else "", ";".join(rng.sample(TAGS, rng.randint(0, 2))),
                   "true"]
            if bad_every and i % bad_every == 0:
                row[1] = "天罗地网" if (i // bad_every) % 2 else row[1]
                row[4] = row[4] if (i // bad_every) % 2 else "95.5"
                bad.append(i + 1)
            writer.writerow(row)
    return bad


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    """The API process's resident memory every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples, self.halt = pid, [], threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.samples.append((time.monotonic(), rss_kib(self.pid)))
            except OSError:
                return
            time.sleep(0.05)


class Operator(threading.Thread):
    """Works one alert round and round; every action's round trip, status and start time."""

    CYCLE = [("acknowledge", None), ("dispatch", {"assignee": "巡查一组"}), ("false_alarm", {"reason": "bench"}),
             ("reopen", {"reason": "bench"})]

    def __init__(self, base: str, token: str, alert_id: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.base, self.token, self.alert_id, self.interval = base, token, alert_id, interval
        self.timings: list[tuple[float, float, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.base, timeout=60, headers={"Authorization": f"Bearer {self.token}"}) as client:
            step = 0
            while not self.halt.is_set():
                action, body = self.CYCLE[step % len(self.CYCLE)]
                started = time.monotonic()
                reply = client.post(f"/api/v1/alerts/{self.alert_id}/{action}", json=body)
                self.timings.append((started, time.monotonic() - started, reply.status_code))
                if reply.status_code == 409:  # out of step (the engine touched it): start the cycle again
                    state = client.get(f"/api/v1/alerts/{self.alert_id}").json()["state"]
                    step = 0 if state == "new" else 3 if state in ("resolved", "false_alarm") else 2
                else:
                    step += 1
                time.sleep(max(0.0, self.interval - (time.monotonic() - started)))


def figures(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    if not ms:
        return {}
    return {"count": len(ms), "p50_ms": round(statistics.median(ms), 1),
            "p95_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.95))], 1),
            "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1), "max_ms": round(ms[-1], 1)}


def measure(tree: Path, csv_path: Path, rows: int, bad: int, args: argparse.Namespace, label: str,
            database_url: str | None) -> dict[str, object]:
    """One service from `tree`, one import of `csv_path`, the operator working beside it."""
    import httpx
    import redis
    from cryptography.fernet import Fernet

    from config.redis_names import EVENTS_STREAM
    from detectors.events import Event
    from tests.conftest import free_port, start_redis, wait_for

    folder = Path(tempfile.mkdtemp(prefix=f"lookout-flood-{label}-"))
    redis_process, redis_url = start_redis(folder)
    key = Fernet.generate_key().decode()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_") and k != "PYTHONPATH"} | {
        "LOOKOUT_DATA_DIR": str(folder / "data"), "LOOKOUT_REDIS_URL": redis_url, "LOOKOUT_SECRET_KEY": key,
        "LOOKOUT_LOG_LEVEL": "WARNING"}
    if database_url:
        env["LOOKOUT_DATABASE_URL"] = database_url
    seeded = subprocess.run([sys.executable, "-c", SEED, str(folder / "data"), redis_url, key], cwd=tree, env=env,
                            capture_output=True, text=True, check=True)
    seed = json.loads(seeded.stdout.strip().splitlines()[-1])
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "0"],
                              cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    result: dict[str, object] = {"code": label}
    try:
        wait_for(lambda: _healthy(base), 90)
        duty = {"Authorization": f"Bearer {seed['tokens']['duty']}"}
        client = redis.Redis.from_url(redis_url)
        event = Event(seed["camera_id"], "flame", time.time(), 0.9, {}, event_id=uuid.uuid4().hex)
        client.xadd(EVENTS_STREAM, event.fields())  # the engine opens the alert the operator works
        client.close()
        alert_ids: list[int] = []

        def alert_open() -> bool:
            items = httpx.get(f"{base}/api/v1/alerts", headers=duty, timeout=5).json()["items"]
            alert_ids[:] = [a["id"] for a in items]
            return bool(items)

        wait_for(alert_open, 60)
        sampler = Sampler(server.pid)
        sampler.start()
        operator = Operator(base, seed["tokens"]["duty"], alert_ids[0], args.action_interval)
        operator.start()
        time.sleep(args.settle)
        baseline = statistics.median(kib for _, kib in sampler.samples[-int(args.settle * 10):])
        started = time.monotonic()
        with csv_path.open("rb") as handle:
            reply = httpx.post(f"{base}/api/v1/cameras/import", timeout=7200,
                               headers={"Authorization": f"Bearer {seed['tokens']['tech']}"},
                               files={"file": ("cameras.csv", handle, "text/csv")})
        ended = time.monotonic()
        time.sleep(1.0)
        operator.halt.set()
        sampler.halt.set()
        operator.join(60)
        sampler.join(5)
        body = reply.json() if reply.headers.get("content-type", "").startswith("application/json") else {}
        during = [t for s, t, _ in operator.timings if started <= s <= ended]
        before = [t for s, t, _ in operator.timings if s < started]
        peak = max(kib for t, kib in sampler.samples if started <= t <= ended + 1.0)
        errors_reported = body.get("errors_total", len(body.get("errors", [])))
        result |= {
            "status": reply.status_code, "import_seconds": round(ended - started, 1),
            "rows_per_second": round(rows / (ended - started)),
            "response_bytes": len(reply.content),
            "created": body.get("created"), "errors_reported": errors_reported,
            "all_good_rows_created": body.get("created") == rows - bad, "all_bad_rows_counted": errors_reported == bad,
            "rss_before_mib": round(baseline / 1024, 1), "rss_peak_mib": round(peak / 1024, 1),
            "rss_added_mib": round((peak - baseline) / 1024, 1),
            "alert_action_before": figures(before), "alert_action_during": figures(during),
            "alert_action_failures_during": sum(1 for s, _, code in operator.timings
                                                if started <= s <= ended and code >= 500),
            "slowest_actions_during": [  # seconds into the import, milliseconds taken
                [round(s - started, 1), round(t * 1000)]
                for s, t, _ in sorted((x for x in operator.timings if started <= x[0] <= ended),
                                      key=lambda x: -x[1])[:5]],
        }
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        redis_process.terminate()
        shutil.rmtree(folder, ignore_errors=True)
    return result


def _healthy(base: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def naive_tree(commit: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="lookout-old-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), commit], cwd=ROOT, check=True,
                   capture_output=True)
    return path


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from bench.machine import describe as machine

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--action-interval", type=float, default=0.1, help="seconds between alert actions")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds measured before the upload")
    parser.add_argument("--no-naive", action="store_true", help="skip the import of the code before issue 13")
    parser.add_argument("--naive-commit", default=NAIVE_COMMIT)
    parser.add_argument("--postgres", help="also run ours on this PostgreSQL URL (a scratch database: it is wiped)")
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per alert action otherwise
    OUT.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="lookout-flood-csv-"))
    csv_path = folder / "cameras.csv"
    bad = write_csv(csv_path, args.rows)
    results: dict[str, object] = {"machine": machine(), "rows": args.rows, "bad_rows": len(bad),
                                  "file_mib": round(csv_path.stat().st_size / 2**20, 1),
                                  "action_interval_s": args.action_interval}
    print(f"{args.rows} rows, {results['file_mib']} MiB", flush=True)
    ours = measure(ROOT, csv_path, args.rows, len(bad), args, "ours", None)
    results["ours"] = ours
    print("ours:", json.dumps(ours), flush=True)
    if args.postgres:
        _wipe(args.postgres)
        results["ours_postgres"] = measure(ROOT, csv_path, args.rows, len(bad), args, "ours-postgres", args.postgres)
        print("ours on PostgreSQL:", json.dumps(results["ours_postgres"]), flush=True)
    if not args.no_naive:
        tree = naive_tree(args.naive_commit)
        try:
            naive = measure(tree, csv_path, args.rows, len(bad), args, f"naive ({args.naive_commit})", None)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
            shutil.rmtree(tree.parent, ignore_errors=True)
        results["naive"] = naive
        print("naive:", json.dumps(naive), flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    during = ours["alert_action_during"]
    goal = (ours["status"] == 200 and ours["rss_added_mib"] < 300 and during.get("max_ms", 1e9) < 500  # type: ignore[union-attr,operator]
            and ours["all_good_rows_created"] and ours["all_bad_rows_counted"])
    results["goal_met"] = bool(goal)
    (OUT / "import_flood.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2, ensure_ascii=False))
    print("goal met: < 300 MB added, every alert action < 0.5 s" if goal else "goal NOT met")
    return 0 if goal else 1


def _wipe(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
