"""Acceptance 4 of issue 14: `lookout serve` on a small disk the test mounts (a 96 MB tmpfs
holding the whole data folder: SQLite, the embedded Redis and its AOF, the audit log, the video).

Three cameras record `file:` clips of noise at about 4 MB/s together: without retention they
would fill the disk in about 25 s. The test shows that recording never takes free space under
the stop line, that the oldest video goes first, that alerts and audit rows keep being written,
and then, with a ballast file eating the reserve, that `/healthz` and an operational alert
report the pressure, that recording stops while the cameras stay online, and that everything
recovers when the ballast goes.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis

from config.disk_space import MB, DiskLimits
from config.redis_names import EVENTS_STREAM
from detectors.events import SYSTEM_CAMERA_ID, Event
from ingest.storage_guard import RECOVER_SECONDS, StorageGuard
from tests.conftest import captured_logs, free_port, wait_for
from tests.test_segments import _segment, make_noise_clip, small_disk

ROOT = Path(__file__).parents[1]
DISK_MB = 96
CAMERAS = 3
#: the lines for this disk, set through the environment: recording stops under 20 % (19.2 MB),
#: video is deleted to keep 40 % (38.4 MB) free
LIMITS = DiskLimits(min_free_percent=40, stop_free_percent=20, stop_floor_bytes=4 * MB)
LINES_ENV = {"LOOKOUT_WORKER__SEGMENT_MIN_FREE_PERCENT": "40", "LOOKOUT_WORKER__RECORDING_STOP_FREE_PERCENT": "20",
             "LOOKOUT_WORKER__RECORDING_STOP_FREE_MB": "4"}


def _free(path: Path) -> int:
    figures = os.statvfs(path)
    return figures.f_bavail * figures.f_frsize


def _segments(folder: Path) -> dict[str, int]:
    """camera/start.ts → bytes, of every segment file now on disk."""
    found = {}
    for path in folder.glob("*/*.ts"):
        try:
            found[f"{path.parent.name}/{path.name}"] = path.stat().st_size
        except FileNotFoundError:
            continue
    return found


def _start(name: str) -> int:
    return int(name.split("/")[1][:-3])


class Watch(threading.Thread):
    """Samples the disk and the segment files every 0.1 s: the lowest free space seen, every
    file seen (with its largest size), and any file deleted while an older one stayed."""

    def __init__(self, disk: Path, segments: Path) -> None:
        super().__init__(daemon=True)
        self.disk, self.segments = disk, segments
        self.lowest_free = _free(disk)
        self.seen: dict[str, int] = {}
        self.gone: set[str] = set()
        self.out_of_order: list[tuple[str, str]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.1):
            self.lowest_free = min(self.lowest_free, _free(self.disk))
            now = _segments(self.segments)
            for name, size in now.items():
                self.seen[name] = max(size, self.seen.get(name, 0))
            self.gone |= self.seen.keys() - now.keys()
            newest = {}
            for name in now:
                camera = name.split("/")[0]
                newest[camera] = max(newest.get(camera, 0), _start(name))
            # a closed file still here that is older (by more than one segment) than one deleted
            latest_gone = max(self.gone, key=_start, default=None)
            if latest_gone is not None:
                for name in now:
                    if _start(name) < newest[name.split("/")[0]] and _start(name) < _start(latest_gone) - 1500:
                        self.out_of_order.append((name, latest_gone))


def _ballast(disk: Path, target_free: int, hold: float = 3.0) -> Path:
    """Grow a ballast file, never past `target_free` free bytes, until free space has stayed
    there for `hold` seconds: the guard deletes video meanwhile, and the ballast takes that too
    (as a runaway log would)."""
    path = disk / "ballast"
    deadline = time.monotonic() + 60
    low_since = None
    with path.open("ab") as handle:
        while True:
            assert time.monotonic() < deadline, f"the ballast could not hold free space at {target_free}"
            free = _free(disk)
            if free > target_free:
                low_since = None
                try:
                    handle.write(b"\0" * min(4 * MB, free - target_free))
                    handle.flush()
                except OSError as exc:  # the cameras wrote meanwhile
                    assert exc.errno == errno.ENOSPC, exc
            elif low_since is None:
                low_since = time.monotonic()
            elif time.monotonic() - low_since >= hold:
                return path
            time.sleep(0.05)


def test_recording_on_a_small_disk_never_fills_it_and_full_disk_is_reported(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    clip = make_noise_clip(media / "noise.mp4", seconds=4.0, size=(480, 360))  # ~1.4 MB/s
    with small_disk(tmp_path / "disk", DISK_MB) as disk:
        data = disk / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")} | LINES_ENV | {
            "LOOKOUT_DATA_DIR": str(data), "LOOKOUT_LOG_LEVEL": "WARNING", "LOOKOUT_WORKER__DETECTORS": "[]",
            "LOOKOUT_WORKER__ANALYSIS_WIDTH": "64", "LOOKOUT_WORKER__ANALYSIS_HEIGHT": "48",
            "LOOKOUT_WORKER__SEGMENT_SECONDS": "1",
            "LOOKOUT_SECURITY__MEDIA_DIRS": json.dumps([str(media)])}

        def cli(*args: str) -> str:
            done = subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        def audit_rows() -> int:
            found = re.search(r"audit log intact: (\d+) rows", cli("audit", "verify"))
            assert found, "lookout audit verify did not say the log is intact"
            return int(found.group(1))

        cli("unit", "add", "示范县", "330199000000")
        token = re.search(r"token: (lk_[\w-]+)", cli("user", "add", "chief", "--role", "admin", "--unit",
                                                     "330199000000"))
        assert token
        headers = {"Authorization": f"Bearer {token.group(1)}"}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = (tmp_path / "serve.log").open("w")  # off the small disk: shown when the test fails
        process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "1"],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        watch = Watch(disk, data / "segments")
        try:
            wait_for(lambda: _status(f"{base}/healthz") == 200, 60)
            total = os.statvfs(disk).f_blocks * os.statvfs(disk).f_frsize
            stop, reserve = LIMITS.stop_bytes(total), LIMITS.reserve_bytes(total)
            room = _free(disk) - stop
            [unit] = httpx.get(f"{base}/api/v1/units", headers=headers).json()
            cameras = [httpx.post(f"{base}/api/v1/cameras", headers=headers, json={
                "name": f"粮库{i}", "network": "xueliang", "unit_id": unit["id"], "main_stream_url": clip.as_uri(),
            }).json()["id"] for i in range(CAMERAS)]
            watch.start()
            events = redis.Redis(unix_socket_path=str(data / "redis" / "redis.sock"), decode_responses=True)

            # 1. the store reaches the reserve and stays there: the oldest video goes, free space
            #    never drops under the stop line, alerts and audit rows are written all along
            wait_for(lambda: len(watch.gone) >= 10, 90)
            rows = audit_rows()
            events.xadd(EVENTS_STREAM, Event(cameras[0], "flame", time.time(), 0.8).fields())
            wait_for(lambda: _alerts(base, headers, "flame"), 20)
            [fire] = _alerts(base, headers, "flame")
            assert httpx.post(f"{base}/api/v1/alerts/{fire['id']}/acknowledge", headers=headers).status_code == 200
            assert audit_rows() > rows
            wait_for(lambda: sum(watch.seen.values()) > room, 60)  # more video than the disk had room for
            assert watch.lowest_free >= stop, f"free space fell to {watch.lowest_free}, under the stop line {stop}"
            assert watch.out_of_order == [], watch.out_of_order[:5]
            print(f"disk {total // MB} MB, stop line {stop / MB:.1f} MB, reserve {reserve / MB:.1f} MB: lowest free "
                  f"{watch.lowest_free / MB:.1f} MB; {sum(watch.seen.values()) / MB:.0f} MB of video written, "
                  f"{len(watch.gone)} of {len(watch.seen)} segments deleted")
            assert not _disk_events(events)  # keeping the reserve by deleting video is no pressure
            health = httpx.get(f"{base}/healthz").json()
            assert health["disk"].startswith("ok"), health

            # 2. a ballast eats the reserve: all video goes, recording stops, the cameras stay
            #    online, /healthz answers 503 "full", one disk_pressure event makes an alert
            ballast = _ballast(disk, stop - 3 * MB)
            wait_for(lambda: _status(f"{base}/healthz") == 503, 15)
            health = httpx.get(f"{base}/healthz").json()
            assert health["disk"].startswith("full"), health
            # one event when the reserve is lost, one more if recording stops on a later check
            wait_for(lambda: any(e["evidence"]["recording"] == "stopped" for e in _disk_events(events)), 15)
            said = _disk_events(events)
            assert 1 <= len(said) <= 2 and {e["kind"] for e in said} == {"disk_pressure"}, said
            pressure = said[-1]
            assert pressure["evidence"]["free_bytes"] < stop
            assert {"host", "worker_id", "path", "free_percent"} <= pressure["evidence"].keys()
            wait_for(lambda: _alerts(base, headers, "disk_pressure"), 20)  # the operational alert, root unit's
            still = _segments(data / "segments")
            time.sleep(3)
            now = _segments(data / "segments")  # nothing written, nothing new: recording stopped
            assert now.keys() <= still.keys() and all(now[name] == still[name] for name in now)
            online = httpx.get(f"{base}/api/v1/cameras", params={"status": "online"}, headers=headers).json()
            assert {c["id"] for c in online["items"]} == set(cameras)  # the readers go on
            rows = audit_rows()
            events.xadd(EVENTS_STREAM, Event(cameras[1], "smoke", time.time(), 0.9).fields())
            wait_for(lambda: _alerts(base, headers, "smoke"), 20)  # Redis and the database still write
            [smoke] = _alerts(base, headers, "smoke")
            assert httpx.post(f"{base}/api/v1/alerts/{smoke['id']}/acknowledge", headers=headers).status_code == 200
            assert audit_rows() > rows

            # 3. the ballast goes: recording resumes, /healthz is 200 again, one disk_recovered
            ballast.unlink()
            wait_for(lambda: _status(f"{base}/healthz") == 200, 15)
            wait_for(lambda: _disk_events(events)[-1]["kind"] == "disk_recovered", 15 + RECOVER_SECONDS)
            wait_for(lambda: _segments(data / "segments").keys() - still.keys(), 15)  # recording again
            time.sleep(2)
            assert [e["kind"] for e in _disk_events(events)] == [*(e["kind"] for e in said), "disk_recovered"]
            assert process.poll() is None
        finally:
            watch.halt.set()
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            log.close()
            print((tmp_path / "serve.log").read_text()[-6000:])
    assert reserve > stop


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.TransportError:
        return 0


def _alerts(base: str, headers: dict[str, str], kind: str) -> list[dict[str, object]]:
    listed = httpx.get(f"{base}/api/v1/alerts", params={"kind": kind}, headers=headers, timeout=5)
    assert listed.status_code == 200, listed.text
    return list(listed.json()["items"])


def _disk_events(client: redis.Redis) -> list[dict[str, object]]:
    """The system events on the stream, oldest first, evidence decoded."""
    found = []
    for _, fields in client.xrange(EVENTS_STREAM):
        if int(fields["camera_id"]) == SYSTEM_CAMERA_ID:
            found.append({"kind": fields["kind"], "evidence": json.loads(fields["evidence"])})
    return found


# -- the guard's alert episode: across leaders, back from pressure, unreadable disks ------------
#: of a 16 MB tmpfs: the reserve is 30 % (4.8 MB), recording stops under 15 % (2.4 MB)
SMALL = DiskLimits(min_free_percent=30, stop_free_percent=15, stop_floor_bytes=0)
LEADER = """
import json, sys, time
from pathlib import Path
from config.disk_space import DiskLimits
from ingest.storage_guard import RECOVER_SECONDS, StorageGuard
guard = StorageGuard(Path(sys.argv[1]), DiskLimits(30, 15, 0), 3600, 10**12, worker_id="w1")
print(json.dumps([{"kind": e.kind, "evidence": e.evidence} for e in guard.check(0.0)]), flush=True)
time.sleep(600)
"""


def _fill_to(disk: Path, free: int) -> None:
    """Grow (or shrink) the ballast file until `free` bytes are left on `disk`."""
    path = disk / "ballast"
    with path.open("ab") as handle:
        gap = _free(disk) - free
        if gap > 0:
            handle.write(b"\1" * gap)
        else:
            handle.truncate(max(0, path.stat().st_size + gap))


def _until(guard: StorageGuard, start: float, end: float, each: object = None) -> list[tuple[float, Event]]:
    """Check once a second from `start` to `end` (the worker's ticks); (when, event) of each event."""
    said = []
    for second in range(int(start), int(end) + 1):
        if callable(each):
            each(second)
        said += [(float(second), event) for event in guard.check(float(second))]
    return said


def test_a_new_leader_carries_on_the_episode_of_a_killed_one(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 16) as disk:
        root = disk / "segments"
        root.mkdir()
        first = StorageGuard(root, SMALL, 3600, 10**12, worker_id="w0")  # led while there was room
        assert first.check(0.0) == [] and first.leads()
        first.close()
        _fill_to(disk, 0)  # then something else filled the disk to the last byte: the worst case
        leader = subprocess.Popen([sys.executable, "-c", LEADER, str(root)], cwd=ROOT, stdout=subprocess.PIPE,
                                  text=True)
        try:
            [pressure] = json.loads(leader.stdout.readline())  # type: ignore[union-attr]
        finally:
            leader.send_signal(signal.SIGKILL)  # its lock goes with it; its memory too
            leader.wait(10)
            leader.stdout.close()  # type: ignore[union-attr]
        # recording stopped at once; the episode's record was rewritten in place, with no free block
        assert pressure["kind"] == "disk_pressure" and pressure["evidence"]["recording"] == "stopped"
        assert _free(disk) == 0
        successor = StorageGuard(root, SMALL, 3600, 10**12, worker_id="w2")
        assert _until(successor, 0, 5) == [] and successor.leads()  # the same episode: not said again
        successor.close()  # and this one goes too, while the operator frees the disk
        (disk / "ballast").unlink()
        third = StorageGuard(root, SMALL, 3600, 10**12, worker_id="w3")
        [(when, recovered)] = _until(third, 0, 120)  # closes what a dead leader opened
        assert when == RECOVER_SECONDS
        assert recovered.kind == "disk_recovered" and recovered.evidence["worker_id"] == "w3"
        same = ("host", "path")  # what the alert engine matches the two on
        assert {k: recovered.evidence[k] for k in same} == {k: pressure["evidence"][k] for k in same}
        third.close()
        fourth = StorageGuard(root, SMALL, 3600, 10**12, worker_id="w4")  # no episode: nothing said
        assert _until(fourth, 0, 120) == [] and fourth.leads()


def test_recovery_does_not_wait_for_free_space_the_guard_never_keeps(tmp_path: Path) -> None:
    """The operator frees some space, but not up to the reserve plus half the gap between the
    lines (6.0 MB here): video fills it again, and the guard keeps free space at the reserve plus
    its headroom (tiny at a slow fill rate). The episode must end all the same."""
    with small_disk(tmp_path / "disk", 16) as disk:
        root = disk / "segments"
        guard = StorageGuard(root, SMALL, 3600, 10**12, worker_id="w1")
        total = os.statvfs(disk).f_blocks * os.statvfs(disk).f_frsize
        reserve, stop = SMALL.reserve_bytes(total), SMALL.stop_bytes(total)
        _fill_to(disk, int(3.8 * MB))
        [pressure] = guard.check(0.0)
        assert pressure.kind == "disk_pressure"
        _fill_to(disk, int(5.5 * MB))  # freed: over the reserve, under reserve + half the gap
        starts = itertools.count(int(time.time() * 1000) - 600_000, 1000)
        lowest, highest = total, 0

        def record(second: int) -> None:  # 128 kB of video a second, cameras 1 and 2 in turn
            nonlocal lowest, highest
            _segment(root, 1 + second % 2, next(starts), 128 * 1024, age=600)
            lowest, highest = min(lowest, _free(disk)), max(highest, _free(disk))

        said = _until(guard, 1, 120, record)
        print(f"reserve {reserve / MB:.2f} MB, free {lowest / MB:.2f}..{highest / MB:.2f} MB, "
              f"recovered at {said[0][0] if said else None} s")
        assert reserve - 256 * 1024 <= lowest and highest < reserve + (reserve - stop) // 2  # the stuck figures
        [(when, recovered)] = said
        assert recovered.kind == "disk_recovered" and RECOVER_SECONDS <= when <= RECOVER_SECONDS + 2  # after a hold


def test_an_unreadable_disk_is_reported_once_per_spell_beside_a_good_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake only for the failure: statvfs of a dead mount (ENOTCONN), which root cannot make
    here without FUSE; both disks are real tmpfs mounts."""
    from ingest import storage_guard

    real, broken = storage_guard.measure, {"on": True}

    def measure(path: Path, limits: DiskLimits) -> object:  # the fake dead mount
        if broken["on"] and path.name == "data":
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected", str(path))
        return real(path, limits)

    with small_disk(tmp_path / "video", 16) as video, small_disk(tmp_path / "data", 16) as data:
        guard = StorageGuard(video / "segments", SMALL, 3600, 10**12, data_dir=data, worker_id="w1")
        monkeypatch.setattr(storage_guard, "measure", measure)
        with captured_logs() as logs:
            assert _until(guard, 0, 4) == []
            broken["on"] = False
            assert _until(guard, 5, 6) == []
            broken["on"] = True
            assert _until(guard, 7, 9) == []
        lines = [json.loads(line) for line in logs.getvalue().splitlines()]
        assert [line["path"] for line in lines if line["event"] == "disk_unmeasurable"] == [str(data)] * 2
