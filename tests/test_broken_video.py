"""Broken video is visible (issue 14, item 7): bit errors in a camera's stream are counted as
decode errors and named in `last_error`; a new resolution is reported. Real streams made here
with PyAV (`tests.media`), read by the real reader as `file:` cameras, which loop like a camera."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.services import Services
from config.redis_names import EVENTS_STREAM, STREAM_FIGURES_HASH
from detectors.events import Event
from ingest.stream_figures import FigurePublisher, read_figures
from ingest.stream_reader import StreamReader
from registry.camera_spec import CameraSpec
from registry.cameras import Camera
from registry.fields import has_control_characters
from registry.units import create_unit
from tests.conftest import bearer_headers, captured_logs, wait_for
from tests.detection_worker import make_runner, run_worker
from tests.media import as_mpegts, cut_head, damage, make_clip, make_resized_clip

SIZE = (160, 120)  # the analysis size every frame must come at, whatever the camera sends
# analysis intervals: every frame decoded / keyframes only (GOP: 1 s) / only every other keyframe
FAST, SLOW, SLOWER = 0.1, 1.0, 2.0


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """3 s clips at 10 fps, a keyframe every 10 pictures (0, 10, 20), the first GOP clean,
    carried in MPEG-TS as a camera's stream is (a raw elementary stream has no timestamps)."""
    d = tmp_path_factory.mktemp("broken")
    clean, clean5 = make_clip(d / "clean.h264"), make_clip(d / "clean.h265", "h265")
    streams = {
        "clean": clean, "clean5": clean5,
        "p_damaged": damage(clean, d / "p.h264", {13, 16, 24, 27}),
        "i_damaged": damage(clean, d / "i.h264", {10, 20}),
        "p_damaged5": damage(clean5, d / "p.h265", {13, 16, 24, 27}, "h265"),
        "one_damaged": damage(clean, d / "one.h264", {5}),
        "all_damaged": damage(clean, d / "all.h264", set(range(30))),
        "late5": cut_head(clean5, d / "late.h265", 3, "h265"),
        "resized": make_resized_clip(d / "resized.h264"),
    }
    return {name: as_mpegts(path, d / f"{name}.ts") for name, path in streams.items()}


def reader(path: Path, interval: float, **kwargs: object) -> StreamReader:
    r = StreamReader(7, path.as_uri(), size=SIZE, interval=interval, **kwargs)  # type: ignore[arg-type]
    r.start()
    return r


def stop(r: StreamReader) -> None:
    r.stop()
    r.join(10)
    assert not r.is_alive()


def analysed_shape(r: StreamReader) -> tuple[int, ...]:
    r.take_latest()
    wait_for(lambda: r._latest is not None, 10)
    latest = r.take_latest()
    assert latest is not None
    return latest[1].shape


@pytest.mark.parametrize("name,interval", [("clean", FAST), ("clean", SLOW), ("clean5", FAST), ("late5", FAST)])
def test_clean_streams_count_no_decode_errors(media: dict[str, Path], name: str, interval: float) -> None:
    """Including one that starts mid-GOP on every loop (a camera joined late): pictures whose
    references never came are not bit errors."""
    r = reader(media[name], interval)
    try:
        wait_for(lambda: r.stats.packets > 45, 15)  # past the loop's end, back at its start
        assert r.stats.decoded >= 3
        assert r.stats.decode_errors == 0 and r.stats.last_error is None
    finally:
        stop(r)


@pytest.mark.parametrize("name,interval,codec", [
    ("p_damaged", FAST, "H.264"),  # damaged P-frames, every frame decoded
    ("i_damaged", SLOW, "H.264"),  # damaged keyframes, keyframe-only decoding
    ("i_damaged", SLOWER, "H.264"),  # and some keyframes skipped, across the clip's loops
    ("all_damaged", FAST, "H.264"),  # every picture, from the first: no clean one to wait for
    ("p_damaged5", FAST, "H.265"),
])
def test_bit_errors_are_counted_and_named(media: dict[str, Path], name: str, interval: float, codec: str) -> None:
    r = reader(media[name], interval)
    try:
        wait_for(lambda: r.stats.decode_errors > 0, 15)
        error = r.stats.last_error
        assert error is not None and error.startswith(f"corrupt {codec} data: ")
        assert "damaged frame" in error and "in the last 60 s" in error
        assert len(error) <= 300 and not has_control_characters(error)
        assert r.stats.connected and r.stats.reconnects == 0  # damaged, not disconnected
        assert analysed_shape(r) == (120, 160, 3)  # and still analysed
        wait_for(lambda: r.stats.decoded >= 4, 15)  # on and on, whatever the loop brings
        if name == "all_damaged":  # counted on the second pass too (30 pictures a pass)
            wait_for(lambda: r.stats.decode_errors > 35, 15)
        if interval >= SLOW:
            assert r.stats.decoded <= r.stats.packets / 5  # still keyframes only
    finally:
        stop(r)


def test_the_error_clears_once_the_window_has_no_damage(media: dict[str, Path]) -> None:
    """One damaged picture per 3 s loop; with a 1 s window the message comes and goes, while
    the count only grows."""
    with captured_logs() as logs:
        r = reader(media["one_damaged"], FAST, damage_window=1.0)
        try:
            wait_for(lambda: r.stats.last_error is not None, 15)
            assert r.stats.last_error == "corrupt H.264 data: 1 damaged frame in the last 1 s"
            wait_for(lambda: r.stats.last_error is None, 10)
            assert r.stats.decode_errors >= 1
            wait_for(lambda: r.stats.decode_errors >= 2, 10)  # the next loop: counted again
        finally:
            stop(r)
    events = [json.loads(line) for line in logs.getvalue().splitlines()]
    started = [e for e in events if e["event"] == "stream_corrupt"]
    assert started and started[0]["camera_id"] == 7 and started[0]["codec"] == "h264"
    assert any(e["event"] == "stream_corrupt_cleared" and e["camera_id"] == 7 for e in events)


@pytest.mark.parametrize("interval", [FAST, SLOW])
def test_a_new_resolution_is_reported_and_frames_keep_the_analysis_size(media: dict[str, Path],
                                                                       interval: float) -> None:
    with captured_logs() as logs:
        r = reader(media["resized"], interval)
        try:
            wait_for(lambda: r.stats.width == 320, 10)
            wait_for(lambda: (r.stats.width, r.stats.height) == (480, 272), 15)
            assert analysed_shape(r) == (120, 160, 3)
            wait_for(lambda: (r.stats.width, r.stats.height) == (320, 240), 15)  # looped: back
            assert analysed_shape(r) == (120, 160, 3)
            assert r.stats.decode_errors == 0 and r.stats.last_error is None
        finally:
            stop(r)
    changes = [e for e in map(json.loads, logs.getvalue().splitlines()) if e["event"] == "stream_resolution_changed"]
    assert changes[0] == {**changes[0], "camera_id": 7, "old_width": 320, "old_height": 240,
                          "width": 480, "height": 272}
    assert changes[1] == {**changes[1], "old_width": 480, "width": 320}


def test_the_stream_figures_show_errors_and_the_new_size(media: dict[str, Path], redis_url: str) -> None:
    damaged, resized = reader(media["p_damaged"], FAST), reader(media["resized"], FAST)
    try:
        wait_for(lambda: damaged.stats.decode_errors > 0 and resized.stats.width == 480, 15)
        client = redis.Redis.from_url(redis_url)
        FigurePublisher(client, "w1").publish({1: damaged.stats, 2: resized.stats})
        figures = read_figures(client, [1, 2])
        assert figures[1]["decode_errors"] > 0 and figures[1]["last_error"].startswith("corrupt H.264 data")
        assert 0 < figures[1]["recent_decode_errors"] <= figures[1]["decode_errors"]
        assert (figures[2]["width"], figures[2]["height"]) == (480, 272) and figures[2]["decode_errors"] == 0
        client.hdel(STREAM_FIGURES_HASH, "1", "2")
    finally:
        stop(damaged)
        stop(resized)


def test_a_camera_whose_stream_keeps_arriving_damaged_is_degraded(sqlite_services: Services, redis_url: str,
                                                                   tmp_path: Path) -> None:
    """End to end: a real worker (`tests.detection_worker`, one sample a second, no detection
    stage) reads two `file:` cameras of the registry, one clean, one whose keyframes (2 of the 3
    a 3 s loop has: all that keyframe-only decoding looks at, 40 a minute) are damaged. The
    damaged one becomes `degraded`, its row naming the corrupt data; the clean one stays online;
    the API's stream figures and /metrics count the damage."""
    clean = make_clip(tmp_path / "clean.h264")  # the data folder: where make_runner's cameras may play from
    streams = {"clean": as_mpegts(clean, tmp_path / "clean.ts"),
               "damaged": as_mpegts(damage(clean, tmp_path / "i.h264", {10, 20}), tmp_path / "damaged.ts")}
    with sqlite_services.sessions() as session:
        county = create_unit(session, name="县", code="330199000000", parent_id=None, scope=None)
        ids = {name: sqlite_services.registry.create(session, CameraSpec(
            name=name, network="xueliang", unit_id=county.id, main_stream_url=path.as_uri()), county.path, "test").id
            for name, path in streams.items()}
        session.commit()
    headers = bearer_headers(sqlite_services, "operator", county, "op")
    api = TestClient(create_app(sqlite_services))
    client = redis.Redis.from_url(redis_url, decode_responses=True)

    def rows() -> dict[str, tuple[str, str | None]]:
        with sqlite_services.sessions() as session:
            return {n: (s, e) for n, s, e in session.execute(select(Camera.name, Camera.status, Camera.last_error))}

    def figures(name: str) -> dict[str, Any]:
        response = api.get(f"/api/v1/cameras/{ids[name]}/stream", headers=headers)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    with run_worker(sqlite_services, client, make_runner(sqlite_services, client, None)):
        wait_for(lambda: rows()["clean"][0] == "online", 20)
        wait_for(lambda: rows()["damaged"][0] == "degraded", 40)  # ≥ 5 damaged frames a minute, held 10 s
        error = rows()["damaged"][1]
        assert error is not None and error.startswith("corrupt H.264 data: ") and "damaged frames" in error
        assert rows()["clean"] == ("online", None)
        wait_for(lambda: (figures("damaged").get("recent_decode_errors") or 0) >= 5, 15)
        damaged = figures("damaged")
        assert damaged["connected"] is True and damaged["reconnects"] == 0  # damaged, not disconnected
        assert damaged["decode_errors"] >= damaged["recent_decode_errors"] >= 5
        assert damaged["last_error"].startswith("corrupt H.264 data: ")
        wait_for(lambda: figures("clean").get("frames_decoded"), 10)
        assert (figures("clean")["decode_errors"], figures("clean")["recent_decode_errors"]) == (0, 0)
        assert figures("clean")["last_error"] is None
        metrics = api.get("/metrics").text
        assert f'lookout_stream_decode_errors{{camera_id="{ids["clean"]}"}} 0.0' in metrics
        assert f'lookout_stream_recent_decode_errors{{camera_id="{ids["clean"]}"}} 0.0' in metrics
        for name in ("decode_errors", "recent_decode_errors"):
            sample = re.search(rf'^lookout_stream_{name}{{camera_id="{ids["damaged"]}"}} (\S+)$', metrics, re.MULTILINE)
            assert sample is not None and float(sample[1]) >= 5
    assert rows()["clean"][0] == "online"
    events = [Event.from_fields(fields) for _, fields in client.xrange(EVENTS_STREAM)]
    assert [e for e in events if e.kind in ("camera_offline", "camera_online")] == []  # nothing went down
