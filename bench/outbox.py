"""What the worker's durable event outbox (`ingest.outbox`, issue 14) costs in CPU, against the
naive way (one XADD pipeline per batch straight to Redis, as workers published before), side by
side in one run, as a share of a worker's CPU at the throughput bench's event rate.

The rate and the worker's CPU come from `bench/throughput.py` (`bench/out/throughput.json` when
it is there, else the figures of its section in bench/RESULTS.md): a worker of 80 cameras uses
about one core, and its events are what its detection stage raised over the run. Because that
rate is tiny (a fire camera alarms once, then its cooldown holds), the same is measured at the
worst case too: EVERY analysed sample of every camera an event (80 cameras × ~0.47 samples/s).

Each simulated tick (1 s of a worker) brings a Poisson number of events shaped like the
detection stage's (boxes, scores, snapshot name) and the health tracker's; the naive side XADDs
them in one pipeline, ours does `put` (one SQLite transaction, WAL) then `flush` (one pipeline,
then the delete) — and `flush` again on every tick, as `CameraRunner.tick` does. Both sides run
in this thread against one private redis-server; the CPU is this thread's (`thread_time`), the
order alternates tick by tick. Also measured: a full outbox (100,000 events put while Redis is
down), its size on disk and how long it takes to drain.

Run: `.venv/bin/python bench/outbox.py [--ticks 3600] [--worst-ticks 600]`; writes
bench/out/outbox.json; exit 1 when the goal (< 1 % of a worker's CPU at the bench's rate) fails.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import describe as machine
from config.redis_server import connect, find_redis_server
from detectors.events import Event
from ingest.outbox import DEFAULT_MAX_EVENTS, EVENTS_MAXLEN, Outbox

OUT = Path(__file__).with_name("out")
#: bench/RESULTS.md, "Cameras per core, end to end": 80 cameras on 1.006 core, 0.466 samples
#: analysed per camera per second, 4 events raised over the 75 s run (15 s warm-up + 60 s)
THROUGHPUT_FALLBACK = {"cameras": 80, "cpu_cores_used": 1.006, "analysed_per_camera_per_s": 0.466,
                       "events_whole_run": 4, "run_seconds": 75.0, "source": "bench/RESULTS.md (throughput section)"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def throughput_figures() -> dict[str, object]:
    path = OUT / "throughput.json"
    if not path.exists():
        return dict(THROUGHPUT_FALLBACK)
    ours = json.loads(path.read_text())["ours"]
    return {"cameras": ours["cameras"], "cpu_cores_used": ours["cpu_cores_used"],
            "analysed_per_camera_per_s": ours["analysed_per_camera_per_s"],
            "events_whole_run": sum(ours["events_whole_run"].values()),
            "run_seconds": float(ours["seconds"]) + 15.0, "source": str(path.relative_to(ROOT))}


def make_event(rng: np.random.Generator, cameras: int) -> Event:
    camera = int(rng.integers(1, cameras + 1))
    if rng.random() < 0.2:
        return Event(camera, "camera_offline", time.time(),
                     evidence={"previous": "online", "error": "read timeout: no packet for 5.0 s"})
    n = int(rng.integers(1, 4))
    boxes = np.round(np.sort(rng.random((n, 4)), axis=1), 4).tolist()
    return Event(camera, "flame", time.time(), float(rng.uniform(0.5, 0.99)), {
        "count": n, "boxes": boxes, "scores": np.round(rng.uniform(0.5, 0.99, n), 3).tolist(), "zones": [],
        "samples": 2, "window": 3, "snapshot": f"{camera}/2026-11-24/{uuid.uuid4().hex}.jpg"})


def naive_publish(client: redis.Redis, events: list[Event]) -> None:
    """What `CameraRunner.publish` did before issue 14."""
    if not events:
        return
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.xadd("bench:naive", event.fields(), maxlen=EVENTS_MAXLEN, approximate=True)
    pipe.execute()


def side_by_side(client: redis.Redis, folder: Path, rate: float, ticks: int, cameras: int, seed: int) -> dict[str, object]:
    """`ticks` seconds of a worker raising `rate` events per second, both ways; CPU per side."""
    rng = np.random.default_rng(seed)
    outbox = Outbox(folder, stream="bench:outbox")
    cpu = {"naive": 0, "ours": 0}
    wall: dict[str, list[float]] = {"naive": [], "ours": []}
    events_total = 0
    for tick in range(ticks):
        count = int(rng.poisson(rate))
        batches = {"naive": [make_event(rng, cameras) for _ in range(count)],
                   "ours": [make_event(rng, cameras) for _ in range(count)]}
        events_total += count
        for side in (("naive", "ours") if tick % 2 else ("ours", "naive")):
            t0, w0 = time.thread_time_ns(), time.perf_counter()
            if side == "naive":
                naive_publish(client, batches[side])
            else:
                outbox.put(batches[side])  # CameraRunner.publish: put, then flush...
                outbox.flush(client)
                outbox.flush(client)  # ...and once more in every tick, nothing left by then
            cpu[side] += time.thread_time_ns() - t0
            if count:
                wall[side].append(time.perf_counter() - w0)
    assert outbox.pending == 0
    outbox.close()
    seconds = float(ticks)
    out: dict[str, object] = {"rate_events_per_s": round(rate, 4), "ticks": ticks, "events": events_total}
    for side in ("naive", "ours"):
        cpu_s = cpu[side] / 1e9
        out[side] = {"cpu_s": round(cpu_s, 4), "cpu_core_share": cpu_s / seconds,
                     "cpu_us_per_event": round(cpu_s * 1e6 / max(events_total, 1), 1),
                     "publish_wall_ms_p50": round(1000 * float(np.median(wall[side])), 3) if wall[side] else None,
                     "publish_wall_ms_p99": round(1000 * float(np.percentile(wall[side], 99)), 3) if wall[side] else None}
    out["ratio_cpu_ours_to_naive"] = round(cpu["ours"] / max(cpu["naive"], 1), 2)
    return out


def full_outbox(client: redis.Redis, folder: Path, events: int, cameras: int) -> dict[str, object]:
    """`events` put while Redis is down (a client to a closed port), then drained."""
    rng = np.random.default_rng(7)
    dead = connect(f"redis://127.0.0.1:{free_port()}/0")  # the worker's kind of client, to nobody
    outbox = Outbox(folder, max_events=events, stream="bench:drain")
    t0 = time.thread_time()
    for _ in range(events // 40):  # a worst-case tick's worth at a time
        outbox.put([make_event(rng, cameras) for _ in range(40)])
        outbox.flush(dead)
    put_cpu = time.thread_time() - t0
    assert outbox.path is not None
    size = sum(p.stat().st_size for p in outbox.path.parent.glob(outbox.path.name + "*"))
    outbox.retry_at = 0.0  # Redis is back: do not wait for the backoff
    t0, w0, flushes = time.thread_time(), time.perf_counter(), 0
    while outbox.pending:
        outbox.flush(client)
        flushes += 1
    drain_cpu, drain_wall = time.thread_time() - t0, time.perf_counter() - w0
    outbox.close()
    return {"events": events, "bytes_on_disk": size, "bytes_per_event": round(size / events),
            "put_cpu_us_per_event": round(put_cpu * 1e6 / events, 1),
            "drain_seconds": round(drain_wall, 2), "drain_cpu_us_per_event": round(drain_cpu * 1e6 / events, 1),
            "drain_flushes (one per tick)": flushes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=3600, help="simulated seconds at the bench's rate")
    parser.add_argument("--worst-ticks", type=int, default=600, help="simulated seconds at the worst-case rate")
    parser.add_argument("--full", type=int, default=DEFAULT_MAX_EVENTS, help="events in the full-outbox test")
    opts = parser.parse_args()
    figures = throughput_figures()
    cameras = int(figures["cameras"])  # type: ignore[call-overload]
    worker_cores = float(figures["cpu_cores_used"])  # type: ignore[arg-type]
    bench_rate = float(figures["events_whole_run"]) / float(figures["run_seconds"])  # type: ignore[arg-type]
    worst_rate = cameras * float(figures["analysed_per_camera_per_s"])  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = subprocess.Popen([find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL)
        try:
            client = connect(f"redis://127.0.0.1:{port}/0")  # as `lookout worker` connects
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            runs = {"bench_rate": side_by_side(client, Path(tmp) / "a", bench_rate, opts.ticks, cameras, 1),
                    "worst_case_rate": side_by_side(client, Path(tmp) / "b", worst_rate, opts.worst_ticks, cameras, 2)}
            full = full_outbox(client, Path(tmp) / "c", opts.full, cameras)
        finally:
            server.terminate()
            server.wait(10)
    for run in runs.values():
        for side in ("naive", "ours"):
            run[side]["share_of_worker_cpu_pct"] = round(100 * run[side].pop("cpu_core_share") / worker_cores, 4)
        run["extra_share_of_worker_cpu_pct"] = round(
            run["ours"]["share_of_worker_cpu_pct"] - run["naive"]["share_of_worker_cpu_pct"], 4)
    results = {"machine": machine(), "throughput_bench": figures, "worker_cpu_cores": worker_cores,
               **runs, "full_outbox": full, "goal": {"share_of_worker_cpu_pct_below": 1.0}}
    OUT.mkdir(exist_ok=True)
    (OUT / "outbox.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    ok = runs["bench_rate"]["ours"]["share_of_worker_cpu_pct"] < 1.0
    print("goal met" if ok else "goal NOT met: the outbox must cost < 1 % of a worker's CPU at the bench's rate")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
