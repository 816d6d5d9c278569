"""The segment store against a real RTSP stream: coverage without gaps, retention."""

from __future__ import annotations

import time
from pathlib import Path

import av
import pytest

from ingest.segments import SegmentWriter, enforce_retention, read_index
from ingest.stream_reader import StreamReader
from tests.conftest import free_port, wait_for
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
    for before, after in zip(entries, entries[1:]):
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
