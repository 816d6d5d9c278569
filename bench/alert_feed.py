"""Event to delivery: how long from an event entering `lookout:events` until every subscriber
in scope has the alert change it caused (issue 6, acceptance 7: 200 events/s with 100
WebSocket subscribers, p95 < 250 ms).

The real service runs as it does in production: `lookout serve` (API with its alert engine
in a subprocess) on a private redis-server and SQLite. 100 operators (10 at the county, 15 at
each of two townships, 15 at each of four villages) hold a WebSocket each, from two client
processes; 400 cameras spread over the villages send flame and smoke events at the given rate,
each stamped with its send time. An event's latency for one subscriber is the time from its
send to the first message that subscriber receives whose alert has counted it.

Side by side, in the same run: the obvious naive console, the same 100 operators polling
`GET /api/v1/alerts?updated_since=` every second. Prints and writes bench/out/alert_feed.json.

    .venv/bin/python bench/alert_feed.py [--rate 200] [--seconds 30] [--subscribers 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np
import redis
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out"

from alerts.model import AlertEvent  # noqa: E402
from api.services import build_services  # noqa: E402
from bench.machine import describe as machine  # noqa: E402
from config.redis_names import EVENTS_STREAM
from config.settings import Settings  # noqa: E402
from detectors.events import Event  # noqa: E402
from registry.camera_spec import CameraSpec  # noqa: E402
from registry.migrate import upgrade  # noqa: E402
from registry.units import create_unit  # noqa: E402
from registry.users import Role, User, hash_password, issue_token  # noqa: E402
from tests.conftest import SECRET, children_of, free_port, start_redis, wait_for  # noqa: E402

CLIENT_PROCESSES = 2


def seed(settings: Settings, subscribers: int, cameras: int) -> tuple[list[tuple[str, str]], dict[int, str]]:
    """Units, operators (token, unit path) and cameras (id → unit path)."""
    services = build_services(settings)
    upgrade(services.engine)
    rng = random.Random(6)
    with services.sessions() as session:
        county = create_unit(session, name="示范县", code="330199000000", parent_id=None, scope=None)
        towns = [create_unit(session, name=f"镇{t}", code=f"3301990{t:02d}000", parent_id=county.id, scope=None)
                 for t in (1, 2)]
        villages = [create_unit(session, name=f"村{t}{v}", code=f"3301990{t:02d}{v:03d}", parent_id=town.id, scope=None)
                    for t, town in enumerate(towns, 1) for v in (1, 2)]
        units = [county] * (subscribers // 10) + [towns[i % 2] for i in range(subscribers * 3 // 10)]
        units += [villages[i % 4] for i in range(subscribers - len(units))]
        password = hash_password(uuid.uuid4().hex)
        people = []
        for n, unit in enumerate(units):
            user = User(username=f"op{n}", role=Role.operator.value, unit_id=unit.id, password_hash=password)
            session.add(user)
            session.flush()
            token, _ = issue_token(session, user, timedelta(hours=4))
            people.append((token, unit.path))
        placed = {}
        for n in range(cameras):
            village = villages[n % 4]
            spec = CameraSpec(name=f"cam{n}", network="xueliang", unit_id=village.id,
                              latitude=30.20 + rng.uniform(0, 0.18), longitude=120.10 + rng.uniform(0, 0.2))
            placed[services.registry.create(session, spec, county.path, "bench").id] = village.path
        session.commit()
    services.close()
    return people, placed


def _client(base: str, people: list[tuple[int, str]], mode: str, seconds: float, interval: float,
            ready: Path, out: Path) -> None:
    """One client process: WebSockets or pollers for `people`; writes what each received."""
    received: list[tuple[int, float, int, int]] = []  # subscriber, time, alert id, its event count

    async def socket(index: int, token: str, connected: asyncio.Event) -> None:
        from websockets.asyncio.client import connect

        async with connect(f"{base.replace('http', 'ws')}/api/v1/alerts/ws?access_token={token}",
                           max_queue=None) as ws:
            connected.set()
            end = time.time() + seconds
            while time.time() < end:
                try:
                    text = await asyncio.wait_for(ws.recv(), max(0.05, end - time.time()))
                except asyncio.TimeoutError:
                    break
                now = time.time()
                alert = json.loads(text)["alert"]
                received.append((index, now, alert["id"], alert["event_count"]))

    async def poller(index: int, token: str, client: httpx.AsyncClient) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        since = datetime.now(timezone.utc) - timedelta(seconds=1)
        end = time.time() + seconds
        await asyncio.sleep(random.uniform(0, interval))
        while time.time() < end:
            started = datetime.now(timezone.utc)
            reply = await client.get("/api/v1/alerts", headers=headers,
                                     params={"updated_since": since.isoformat(), "limit": 500})
            now = time.time()
            for alert in reply.json()["items"]:
                received.append((index, now, alert["id"], alert["event_count"]))
            since = started - timedelta(seconds=1)  # overlap: a change committed while we asked
            await asyncio.sleep(max(0.0, interval - (time.time() - now)))

    async def main() -> None:
        if mode == "push":
            flags = [asyncio.Event() for _ in people]
            tasks = [asyncio.create_task(socket(i, t, f)) for (i, t), f in zip(people, flags)]
            await asyncio.wait_for(asyncio.gather(*(f.wait() for f in flags)), 60)
            ready.touch()
            await asyncio.gather(*tasks)
        else:
            async with httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=200)) as client:
                ready.touch()
                await asyncio.gather(*(poller(i, t, client) for i, t in people))

    asyncio.run(main())
    out.write_text(json.dumps(received))


def _cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def produce(url: str, cameras: list[int], rate: float, seconds: float) -> dict[str, tuple[float, int]]:
    """Events at `rate` per second for `seconds`, in 10 ms ticks; event id → (sent, camera)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    rng = random.Random(7)
    sent: dict[str, tuple[float, int]] = {}
    tick, start = 0.01, time.time()
    while time.time() - start < seconds:
        due = int(rate * (time.time() - start)) - len(sent)
        pipe = client.pipeline(transaction=False)
        for _ in range(max(0, due)):
            camera = rng.choice(cameras)
            now = time.time()
            event = Event(camera, "flame" if rng.random() < 0.6 else "smoke", now, round(rng.uniform(0.3, 0.95), 3),
                          {"sent": now}, event_id=uuid.uuid4().hex)
            sent[event.event_id] = (now, camera)
            pipe.xadd(EVENTS_STREAM, event.fields())
        pipe.execute()
        start_next = start + tick * (round((time.time() - start) / tick) + 1)
        time.sleep(max(0.0, start_next - time.time()))
    client.close()
    return sent


def latencies(received: list[tuple[int, float, int, int]], sent: dict[str, tuple[float, int]],
              alert_of: dict[str, int], scope_of: list[str], unit_of: dict[int, str],
              earlier: dict[int, int]) -> dict[str, object]:
    """Per (event, subscriber in scope): seconds from send to the first message counting it.
    `earlier`: events each alert had counted before this phase."""
    sends: dict[int, list[float]] = {}
    for event_id, (at, _) in sent.items():
        sends.setdefault(alert_of[event_id], []).append(at)
    for times in sends.values():
        times.sort()  # the engine counts an alert's events in the order they were sent
    counted: dict[tuple[int, int], int] = {}
    values = []
    for subscriber, at, alert_id, count in sorted(received, key=lambda r: (r[0], r[1])):
        if alert_id not in sends:
            continue
        count -= earlier.get(alert_id, 0)
        done = counted.get((subscriber, alert_id), 0)
        for k in range(done, min(count, len(sends[alert_id]))):
            values.append(at - sends[alert_id][k])
        counted[(subscriber, alert_id)] = max(done, count)
    expected = sum(sum(1 for scope in scope_of if unit_of[camera].startswith(scope)) for _, camera in sent.values())
    ms = np.array(values) * 1000
    return {"pairs_expected": expected, "pairs_delivered": len(values),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "max_ms": round(float(ms.max()), 1)}


def run_phase(mode: str, base: str, redis_url: str, people: list[tuple[str, str]], cameras: dict[int, str],
              args: argparse.Namespace, server_pids: list[int], folder: Path) -> dict[str, object]:
    ctx = multiprocessing.get_context("spawn")
    indexed = list(enumerate(token for token, _ in people))
    shares = [indexed[i::CLIENT_PROCESSES] for i in range(CLIENT_PROCESSES)]
    span = args.seconds + args.drain
    processes, readies, outs = [], [], []
    for n, share in enumerate(shares):
        ready, out = folder / f"{mode}{n}.ready", folder / f"{mode}{n}.json"
        processes.append(ctx.Process(target=_client,
                                     args=(base, share, mode, span + 10, args.poll_interval, ready, out)))
        readies.append(ready)
        outs.append(out)
    for process in processes:
        process.start()
    wait_for(lambda: all(r.exists() for r in readies), 90)
    time.sleep(1.0)
    cpu_before, wall_before = _cpu_seconds(server_pids), time.time()
    sent = produce(redis_url, list(cameras), args.rate, args.seconds)
    time.sleep(args.drain)
    cpu = (_cpu_seconds(server_pids) - cpu_before) / (time.time() - wall_before)
    for process in processes:
        process.join(span + 60)
    received = [tuple(r) for out in outs for r in json.loads(out.read_text())]
    return {"sent": sent, "received": received, "server_cores": round(cpu, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--drain", type=float, default=5.0, help="seconds to wait for the last deliveries")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--cameras", type=int, default=400)
    parser.add_argument("--poll-interval", type=float, default=1.0, help="the naive console's polling period")
    parser.add_argument("--no-naive", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="lookout-feed-"))
    redis_process, redis_url = start_redis(folder)
    settings = Settings(data_dir=folder / "data", redis_url=redis_url, secret_key=SECRET)
    people, cameras = seed(settings, args.subscribers, args.cameras)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")} | {
        "LOOKOUT_DATA_DIR": str(folder / "data"), "LOOKOUT_REDIS_URL": redis_url, "LOOKOUT_SECRET_KEY": SECRET,
        "LOOKOUT_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "0"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, object] = {"machine": machine(), "rate": args.rate, "seconds": args.seconds,
                                  "subscribers": args.subscribers, "cameras": args.cameras}
    try:
        wait_for(lambda: _healthy(base), 60)
        pids = [server.pid, *children_of(server.pid)]
        phases = [("push", "WebSocket (ours)")] + ([] if args.no_naive else [("poll", "polling every "
                                                                                f"{args.poll_interval:g} s (naive)")])
        earlier: dict[int, int] = {}  # events each alert counted in the phases before
        for mode, label in phases:
            phase = run_phase(mode, base, redis_url, people, cameras, args, pids, folder)
            services = build_services(settings)
            with services.sessions() as session:
                alert_of = dict(session.execute(select(AlertEvent.event_id, AlertEvent.alert_id)).all())
            services.close()
            sent = phase["sent"]
            figures = latencies(phase["received"], sent, alert_of, [s for _, s in people], cameras,  # type: ignore[arg-type]
                                earlier)
            figures |= {"events": len(sent), "events_in_alerts": sum(1 for e in sent if e in alert_of),  # type: ignore[union-attr]
                        "server_cores": phase["server_cores"], "messages": len(phase["received"])}  # type: ignore[arg-type]
            results[mode] = figures
            for event_id in sent:  # type: ignore[union-attr]
                earlier[alert_of[event_id]] = earlier.get(alert_of[event_id], 0) + 1
            print(f"{label}: {json.dumps(figures)}", flush=True)
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:  # uvicorn still closing sockets: the figures are taken
            server.kill()
        redis_process.terminate()
    push = results["push"]
    verdict = push["p95_ms"] < 250 and push["pairs_delivered"] == push["pairs_expected"]  # type: ignore[index]
    if "poll" in results:
        results["naive_over_ours_p95"] = round(results["poll"]["p95_ms"] / push["p95_ms"], 1)  # type: ignore[index]
    results["goal_met"] = bool(verdict)
    (OUT / "alert_feed.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))
    print("goal met: p95 < 250 ms, every subscriber got every event in scope" if verdict else "goal NOT met")
    return 0 if verdict else 1


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
