"""The segment store against a real RTSP stream: coverage without gaps, retention; retention by free
space and recording stopped on a small real filesystem (a tmpfs the test mounts)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np
import pytest

from config.disk_space import DiskLimits, measure
from detectors.events import SYSTEM_CAMERA_ID
from ingest.segments import SegmentStore, SegmentWriter, enforce_retention, read_index
from ingest.storage_guard import RECOVER_SECONDS, StorageGuard
from ingest.stream_reader import StreamReader
from tests.conftest import captured_logs, free_port, wait_for
from tests.media import make_clip
from tests.rtsp import RtspServer

GOP = 1.0  # make_clip: 10 fps, a keyframe every 10 frames




def record(tmp_path: Path, seconds: float, segment_seconds: float = 2.0) -> tuple[Path, RtspServer]:
    server = RtspServer(free_port(), {"cam": make_clip(tmp_path / "a.h264")}).start()
    root = tmp_path / "segments"
    writer = SegmentWriter(7, root, segment_seconds=segment_seconds)
    reader = StreamReader(7, server.url("cam"), size=(160, 120), interval=1.0,
                          on_packet=lambda _id, packet: writer.write(packet))
    reader.start()
    try:
        wait_for(lambda: reader.stats.packets > 0, 10)
        time.sleep(seconds)
    finally:
        reader.stop()
        reader.join(10)
        writer.finish()
    assert writer.failures == 0  # every packet reached a segment
    return root, server


@pytest.fixture
def recorded(tmp_path: Path):  # type: ignore[no-untyped-def]
    root, server = record(tmp_path, 9.0)
    yield root
    server.kill()


def test_segments_cover_the_stream_without_gaps(recorded: Path) -> None:
    entries = read_index(recorded / "7")
    assert len(entries) >= 4
    for before, after in itertools.pairwise(entries):
        assert after["start"] - before["end"] <= GOP  # no gap beyond one GOP while connected
        assert after["start"] >= before["start"]
    for entry in entries[:-1]:
        assert 2.0 - 0.01 <= entry["end"] - entry["start"] <= 2.0 + GOP + 0.01
        assert entry["keyframes"] == [0.0, 1.0]  # opens with a keyframe; one per GOP, none doubled
    with av.open(str(recorded / "7" / entries[1]["path"])) as segment:  # remuxed, and playable alone
        stream = segment.streams.video[0]
        frames = sum(1 for _ in segment.decode(stream))
        # 2 s at 10 fps, none lost (the test server repeats each keyframe picture once over RTP)
        assert stream.codec_context.name == "h264" and 20 <= frames <= 22


def test_retention_removes_oldest_first_and_holds_the_cap(recorded: Path) -> None:
    entries = read_index(recorded / "7")
    sizes = [int(e["bytes"]) for e in entries]
    cap = sum(sizes[-2:])  # room for the two newest segments only
    deleted = enforce_retention(recorded, max_age_seconds=3600, max_bytes=cap)
    left = read_index(recorded / "7")
    assert deleted == len(entries) - 2
    assert [e["path"] for e in left] == [e["path"] for e in entries[-2:]]  # the oldest went first
    assert sum(p.stat().st_size for p in (recorded / "7").glob("*.ts")) <= cap
    newest_start = float(left[-1]["start"])
    enforce_retention(recorded, max_age_seconds=1.0, max_bytes=10**12, now=newest_start + 0.5)
    assert [e["path"] for e in read_index(recorded / "7")] == [left[-1]["path"]]  # older than 1 s: gone


def test_finishing_after_the_source_closed_never_touches_its_stream(tmp_path: Path) -> None:
    """Regression: `finish()` used to open a segment from the held packet's input stream after
    the reader had closed that container: a use-after-free that crashed the worker."""
    import gc

    clip = make_clip(tmp_path / "c.mp4", seconds=1.0)
    writer = SegmentWriter(1, tmp_path / "segments", 10.0)
    with av.open(str(clip)) as source:
        first = next(p for p in source.demux(video=0) if p.size)
        assert first.is_keyframe
        writer.write(first)  # held back: pieces of one access unit are joined before writing
    gc.collect()
    writer.finish()
    assert read_index(tmp_path / "segments" / "1") == [] and writer.failures == 0
    writer.write(first)  # and nothing is written after finish
    assert list((tmp_path / "segments" / "1").glob("*.ts")) == []


# -- retention by free space, and recording stopped on a full disk (issue 14, item 4) ------------
MiB = 2**20


@contextmanager
def small_disk(folder: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of `megabytes` mounted at `folder`: a disk the test can fill. The tests run as
    root; where mounting is not allowed this fails, saying so, rather than skip."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}M,mode=0700", "tmpfs", str(folder)],
                          check=False, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a {megabytes} MB tmpfs at {folder}: these disk-full tests need root "
                    f"(CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)  # lazy: a straggler may hold a file


def make_noise_clip(path: Path, seconds: float = 4.0, size: tuple[int, int] = (320, 240), fps: int = 10,
                    gop: int = 10) -> Path:
    """An MP4 of random pictures: about 0.65 MB/s at 320x240, a store that fills fast."""
    rng = np.random.default_rng(0)
    width, height = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={
            "x264-params": f"keyint={gop}:min-keyint={gop}:bframes=0:scenecut=0", "preset": "ultrafast", "crf": "18"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(int(seconds * fps)):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _segment(root: Path, camera: int, start_ms: int, size: int, age: float = 0.0) -> Path:
    folder = root / str(camera)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{start_ms}.ts"
    path.write_bytes(os.urandom(size))
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    with (folder / "index.jsonl").open("a") as index:
        index.write(json.dumps({"camera_id": camera, "start": start_ms / 1000, "end": start_ms / 1000 + 1,
                                "path": path.name, "bytes": size, "keyframes": [0.0]}) + "\n")
    return path


def _names(root: Path) -> set[str]:
    return {f"{p.parent.name}/{p.name}" for p in root.glob("*/*.ts")}


def test_space_retention_deletes_the_oldest_video_across_cameras_and_never_an_open_file(tmp_path: Path) -> None:
    root = tmp_path / "segments"
    base = int(time.time() * 1000) - 600_000  # names are start times (ms): ten minutes ago, onwards

    def names(*pairs: tuple[int, int]) -> list[str]:
        return [f"{camera}/{base + start}.ts" for camera, start in pairs]

    for camera, starts in {1: [1000, 4000, 7000, 9000], 2: [2000, 5000, 8000]}.items():
        for start in starts:
            _segment(root, camera, base + start, 8192, age=0 if start in (9000, 8000) else 600)
    for start in (3000, 6000):  # a camera that stopped recording long ago: its newest file is closed
        _segment(root, 3, base + start, 8192, age=3600)
    store = SegmentStore(root, open_grace=60.0)
    gone = []
    while True:
        before = _names(root)
        deleted, freed = store.retire(1)  # one byte: exactly one file per pass
        if not deleted:
            break
        assert deleted == 1 and freed >= 8192
        gone += sorted(before - _names(root))
    # the oldest first, across cameras; 9000 waits: it is newer than camera 2's open 8000
    assert gone == names((1, 1000), (2, 2000), (3, 3000), (1, 4000), (2, 5000), (3, 6000), (1, 7000))
    assert store.exhausted and _names(root) == set(names((1, 9000), (2, 8000)))
    _segment(root, 2, base + 11000, 8192)  # camera 2 moves on: 8000 is closed now, and older than 9000
    assert store.retire(1) == (1, 8192) and _names(root) == set(names((1, 9000), (2, 11000)))
    assert store.retire(10**9)[0] == 0 and store.exhausted  # both left are open: never deleted
    raw = (root / "1" / "index.jsonl").read_text().splitlines()
    assert len(raw) == 4  # compaction is lazy: once a minute, not at every deletion
    store.enforce(max_age_seconds=3600, max_bytes=10**12)
    assert [json.loads(line)["path"] for line in (root / "1" / "index.jsonl").read_text().splitlines()] == [
        f"{base + 9000}.ts"]


def _fill(path: Path, megabytes: float) -> None:
    with path.open("ab") as handle:
        handle.write(b"\0" * int(megabytes * MiB))


def test_the_guard_keeps_the_reserve_stops_recording_and_alerts_once_per_episode(tmp_path: Path) -> None:
    limits = DiskLimits(min_free_percent=30, stop_free_percent=15, stop_floor_bytes=0)  # of 16 MB: 4.8 / 2.4
    with small_disk(tmp_path / "disk", 16) as disk:
        root = disk / "segments"
        guard = StorageGuard(root, limits, 3600, 10**12, worker_id="w1")
        other = StorageGuard(root, limits, 3600, 10**12, worker_id="w2")  # a second worker on the folder
        starts = iter(range(int(time.time() * 1000) - 600_000, 2**62, 1000))
        for _ in range(5):
            for camera in (1, 2):
                _segment(root, camera, next(starts), MiB, age=600)
        assert guard.check(0.0) == [] and other.check(0.0) == [] and guard.recording
        kept = _names(root)
        for _ in range(2):  # 4 MB more video: under the reserve
            for camera in (1, 2):
                _segment(root, camera, next(starts), MiB, age=600)
        newest = _names(root) - kept
        assert guard.check(1.0) == []
        status = measure(root, limits)
        assert status.free_bytes >= status.reserve_bytes and guard.recording  # video made room
        gone = kept - _names(root)
        oldest = sorted(kept, key=lambda n: int(n.split("/")[1][:-3]))
        assert gone and sorted(gone) == sorted(oldest[:len(gone)]) and newest <= _names(root)  # oldest first

        video = sum(p.stat().st_blocks * 512 for p in root.glob("*/*.ts"))
        ballast = status.free_bytes + video - int(3.8 * MiB)  # low even with all video gone
        events = []
        while ballast > 0:  # as fast as the disk takes it, the guard deleting video meanwhile
            piece = min(ballast, measure(root, limits).free_bytes - MiB // 4)
            _fill(disk / "ballast", piece / MiB)
            ballast -= piece
            events += guard.check(2.0)
        [pressure] = events
        assert (pressure.camera_id, pressure.kind) == (SYSTEM_CAMERA_ID, "disk_pressure")
        assert pressure.evidence["recording"] == "on" and pressure.evidence["worker_id"] == "w1"
        assert {"host", "path", "free_bytes", "free_percent"} <= pressure.evidence.keys()
        assert _names(root) == set() and guard.store.exhausted and measure(root, limits).verdict == "low"
        _fill(disk / "ballast", measure(root, limits).free_bytes / MiB - 1.0)  # under the stop line
        [stopped] = guard.check(3.0)  # the same episode, worse: said once more
        assert stopped.kind == "disk_pressure" and stopped.evidence["recording"] == "stopped"
        assert other.check(3.0) == [] and not guard.recording and not other.recording  # each stops its writers
        assert [guard.check(4.0 + i) for i in range(3)] == [[], [], []]  # no flapping

        os.truncate(disk / "ballast", (disk / "ballast").stat().st_size - int(2.8 * MiB))  # 3.8 MB free
        assert guard.check(8.0) == [] and guard.recording  # resumed half way to the reserve; no alert yet
        (disk / "ballast").unlink()
        assert [guard.check(9.0 + i) for i in range(3)] == [[], [], []]  # a spell without pressure first
        [recovered] = guard.check(9.0 + RECOVER_SECONDS)
        assert recovered.kind == "disk_recovered" and recovered.evidence["recording"] == "on"
        assert all(recovered.evidence[k] == pressure.evidence[k] for k in ("host", "path"))  # one disk, one alert
        assert guard.check(10.0 + RECOVER_SECONDS) == [] and guard.recording


def test_a_paused_writer_drops_packets_and_resumes_at_a_keyframe(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.mp4", seconds=6.0)
    writer = SegmentWriter(3, tmp_path / "segments", segment_seconds=1.0)
    folder = tmp_path / "segments" / "3"
    with av.open(str(clip)) as source:
        packets = [p for p in source.demux(video=0) if p.size]
        for packet in packets[:20]:
            writer.write(packet)
        writer.set_recording(False)  # the open segment is closed and kept
        paused = len(read_index(folder))
        files = set(folder.glob("*.ts"))
        assert paused == len(files) == 2
        for packet in packets[20:40]:
            writer.write(packet)
        assert set(folder.glob("*.ts")) == files and len(read_index(folder)) == paused
        writer.set_recording(True)
        for packet in packets[40:]:
            writer.write(packet)
    writer.finish()
    entries = read_index(folder)
    assert len(entries) == 4 and writer.failures == 0
    assert all(entry["keyframes"][0] == 0.0 for entry in entries)  # each one opens with a keyframe


def test_a_full_disk_costs_segments_never_the_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ingest import segments

    clip = make_noise_clip(tmp_path / "noise.mp4", seconds=2.0)
    with small_disk(tmp_path / "disk", 1) as disk:
        writer = SegmentWriter(5, disk / "segments", segment_seconds=1.0)
        reader = StreamReader(5, clip.as_uri(), size=(64, 48), interval=0.5,
                              on_packet=lambda _id, packet: writer.write(packet))
        reader.start()
        try:
            with captured_logs() as logs:
                wait_for(lambda: writer.failures > 0, 15)  # the 1 MB disk is full after about 2 s
                packets = reader.stats.packets
                wait_for(lambda: reader.stats.packets > packets + 20, 10)  # and the reader goes on
            assert reader.stats.reconnects == 0 and reader.is_alive()
            # said once, not for every packet (a log on the same full disk would only make it worse)
            assert logs.getvalue().count('"segment_write_failed"') == 1
            monkeypatch.setattr(segments, "RETRY_SECONDS", 0.0)
            for path in (disk / "segments" / "5").glob("*.ts"):
                path.unlink()  # space again: the writer takes up at the next keyframe
            written = writer.failures
            wait_for(lambda: len(read_index(disk / "segments" / "5")) >= 1, 10)
            assert reader.stats.reconnects == 0
        finally:
            reader.stop()
            reader.join(10)
            writer.finish()
        assert written > 0
