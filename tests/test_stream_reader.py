"""The PyAV stream reader against a real RTSP server (GStreamer) and real clips."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.stream_reader import StreamReader
from tests.conftest import free_port, wait_for
from tests.media import make_clip
from tests.rtsp import RtspServer
from tests.scenes import ASSETS


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {"h264": make_clip(folder / "a.h264"), "h265": make_clip(folder / "b.h265", "h265")}


@pytest.fixture
def server(clips: dict[str, Path]) -> Iterator[RtspServer]:
    rtsp = RtspServer(free_port(), clips).start()
    yield rtsp
    rtsp.kill()




def reader(url: str, **kwargs: object) -> StreamReader:
    r = StreamReader(1, url, size=(160, 120), **kwargs)  # type: ignore[arg-type]
    r.start()
    return r


def stop(*readers: StreamReader) -> None:
    for r in readers:
        r.stop()
    for r in readers:
        r.join(10)
        assert not r.is_alive()


def test_h264_and_h265_cameras_deliver_frames(server: RtspServer) -> None:
    readers = [reader(server.url(codec), interval=0.5) for codec in ("h264", "h265")]
    try:
        for r in readers:
            wait_for(lambda r=r: r.take_latest() is not None, 10)
            wait_for(lambda r=r: r.take_latest() is not None, 10)
        assert [r.stats.codec for r in readers] == ["h264", "hevc"]
        assert all(r.stats.keyframe_interval == pytest.approx(1.0, abs=0.05) for r in readers)
        # the server repeats the parameter sets before each slice, so FFmpeg splits each H.264
        # keyframe in two packets: decoded apart, each half would come out concealed (damaged)
        assert [(r.stats.decode_errors, r.stats.last_error) for r in readers] == [(0, None), (0, None)]
    finally:
        stop(*readers)


def test_keyframe_only_decoding_when_the_interval_is_at_least_the_gop(server: RtspServer) -> None:
    r = reader(server.url("h264"), interval=1.0)
    try:
        wait_for(lambda: r.stats.packets >= 60, 15)
        # 10 fps with a keyframe every 10 frames: about one decode per 10 packets, never all
        assert r.stats.decoded <= r.stats.packets / 8
        assert r.stats.decoded >= 3
        assert r.stats.decode_errors == 0  # whole keyframes, though each comes in two packets
    finally:
        stop(r)


def test_killed_and_restarted_server_streams_again_within_10s(server: RtspServer) -> None:
    r = reader(server.url("h264"), interval=0.2)
    try:
        wait_for(lambda: r.take_latest() is not None, 10)
        server.kill()
        wait_for(lambda: not r.stats.connected, 10)  # the end of the stream counts as a disconnect
        server.start()
        r.take_latest()
        back = wait_for(lambda: r.take_latest() is not None, 10)
        assert back < 10
        assert r.stats.reconnects >= 1
    finally:
        stop(r)


def test_frozen_server_is_noticed_within_the_read_timeout(server: RtspServer) -> None:
    r = reader(server.url("h264"), interval=0.5, read_timeout=3.0)
    try:
        wait_for(lambda: r.take_latest() is not None, 10)
        assert r.silent_for() < 1.0
        server.freeze()
        # silence past the read timeout, counted from the last packet, is what marks a camera
        # offline (see the worker); packets already in socket buffers may still trickle in first
        wait_for(lambda: r.silent_for() > 3.0, 15.0)
        wait_for(lambda: not r.stats.connected, 15)  # and the reader gives up the session
        assert r.stats.last_error == "timed out"
        server.thaw()
        wait_for(lambda: r.silent_for() < 1.0, 10)  # thawed: streaming again
    finally:
        stop(r)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_100_reconnect_cycles_leave_no_thread_or_fd_behind(server: RtspServer) -> None:
    closed = f"rtsp://127.0.0.1:{free_port()}/nothing"
    warm = reader(closed, max_backoff=0.01, open_timeout=1.0)  # let FFmpeg load what it loads once
    wait_for(lambda: warm.stats.reconnects >= 3, 20)
    stop(warm)
    gc.collect()
    fds, threads = _fds(), threading.active_count()
    r = reader(closed, max_backoff=0.01, open_timeout=1.0)
    wait_for(lambda: r.stats.reconnects >= 100, 60)
    stop(r)
    for _ in range(5):  # and connect/stop cycles against the live server
        live = reader(server.url("h264"), interval=0.5)
        wait_for(lambda live=live: live.stats.packets > 0, 10)
        stop(live)
    gc.collect()
    assert threading.active_count() == threads
    assert _fds() == fds


def test_file_sources_loop_like_a_camera(tmp_path: Path) -> None:
    mp4 = make_clip(tmp_path / "short.mp4", seconds=1.0)
    r = reader(mp4.as_uri(), interval=0.3)
    try:
        wait_for(lambda: r.stats.packets > 25, 10)  # more packets than the 1 s clip holds
        assert r.stats.reconnects == 0 and r.take_latest() is not None
        assert r.stats.packets < 60  # paced at its 10 fps, not read as fast as the disk allows
    finally:
        stop(r)


def test_real_footage_as_a_file_camera() -> None:
    r = reader((ASSETS / "parking-lot.mp4").as_uri(), interval=0.5)
    try:
        wait_for(lambda: r.take_latest() is not None, 10)
        assert (r.stats.width, r.stats.height) == (768, 432)
    finally:
        stop(r)
