"""`lookout eval video`: real clips played as cameras through the worker's own reader and
detection stage on a simulated clock — a fire clip alarms at the right simulated time, a clean
clip raises nothing, a clip shorter than its span is looped from new places, the sweep's replay
raises what the live run raised, and the command's JSON and its manifest errors."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import av
import numpy as np
import pytest

from config.errors import InvalidInput
from detectors.rules import CameraRules
from ingest.clip_playback import SimulatedClock
from ingest.detection import DetectionStage
from ingest.stream_reader import StreamReader
from ingest.video_eval import (
    Clip,
    ClipResult,
    Playing,
    evaluate,
    load_eval_stage,
    read_manifest,
    run,
    stage_rules,
)
from ingest.video_sweep import Grid, frontier
from tests.conftest import MODEL_CACHE
from tests.scenes import ASSETS, clean_samples, fire_scene

ROOT = Path(__file__).resolve().parents[1]
FPS, CLEAN_SECONDS, FIRE_SECONDS = 5, 5, 10
INTERVAL = 2.0
NEGATIVE_SPAN = 70.0  # hall.mp4 is 30 s: three passes


def fire_clip(path: Path, fire: np.ndarray) -> Path:
    """5 s of the real hall (people walking), then the real fire picture panning slowly with a
    little noise, at 5 fps with a keyframe every second, as a camera would send it."""
    clean = clean_samples(CLEAN_SECONDS * FPS, every=2)  # the hall's own 10 fps, every other frame
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"x264-params": f"keyint={FPS}:min-keyint={FPS}:bframes=0"})
        stream.width, stream.height, stream.pix_fmt = fire.shape[1], fire.shape[0], "yuv420p"
        for i in range((CLEAN_SECONDS + FIRE_SECONDS) * FPS):
            if i < len(clean):
                image = clean[i]
            else:
                moved = np.roll(fire, 2 * i, axis=1).astype(np.int16)
                image = np.clip(moved + rng.integers(-3, 4, moved.shape), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


class CountingReader(StreamReader):
    """The worker's reader, remembering each one the evaluation makes."""

    made: ClassVar[list[StreamReader]] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        CountingReader.made.append(self)


@pytest.fixture(scope="module")
def stage(model_files: dict[str, Path]) -> DetectionStage:
    return load_eval_stage(MODEL_CACHE, ["fire_smoke", "people"], stage_rules(CameraRules(), None), threads=2,
                           precision="int8")


@pytest.fixture(scope="module")
def clips(stage: DetectionStage, tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    folder = tmp_path_factory.mktemp("clips")
    fire = fire_clip(folder / "fire.mp4", fire_scene(stage.fire.detector, stage.fire.run))
    return [Clip(fire, "fire.mp4", True, float(CLEAN_SECONDS)), Clip(ASSETS / "hall.mp4", "hall.mp4", False)]


@pytest.fixture(scope="module")
def played(stage: DetectionStage, clips: list[Clip]) -> tuple[list[ClipResult], int]:
    CountingReader.made.clear()
    frames = stage.figures.frames
    results = evaluate(clips, stage, Playing(INTERVAL, negative_span=NEGATIVE_SPAN, positive_span=None), CountingReader)
    return results, stage.figures.frames - frames


def test_a_fire_clip_alarms_on_the_simulated_clock_soon_after_the_fire_is_visible(
        played: tuple[list[ClipResult], int]) -> None:
    fire = played[0][0]
    assert len(fire.starts) == 1  # positive_span None: a positive plays once through
    assert fire.seconds == pytest.approx(CLEAN_SECONDS + FIRE_SECONDS, abs=0.3)
    assert fire.early == []  # the hall before it raised nothing
    first = fire.events[0]
    assert first[1] == "flame" and first[2] >= CameraRules().thresholds["flame"]
    # k of n samples at 2 s: the k-th sample showing fire, the first of them at most an interval in
    k = CameraRules().persistence[0]
    assert CLEAN_SECONDS < first[0] <= CLEAN_SECONDS + k * INTERVAL + 0.5
    assert fire.time_to_alarm == pytest.approx(first[0] - CLEAN_SECONDS)
    assert [kind for _, kind, _ in fire.events] == ["flame"]  # cooldown: one event per kind
    assert fire.samples == pytest.approx((CLEAN_SECONDS + FIRE_SECONDS) / INTERVAL, abs=1)


def test_a_clean_clip_raises_nothing_and_is_looped_from_new_places_up_to_its_span(
        played: tuple[list[ClipResult], int]) -> None:
    hall = played[0][1]
    assert hall.events == [] and hall.time_to_alarm is None
    assert hall.seconds == NEGATIVE_SPAN and hall.length == pytest.approx(30.0, abs=0.2)
    assert len(hall.starts) == 3 and len(set(hall.starts)) == 3  # three passes, each from elsewhere
    assert hall.samples == pytest.approx(NEGATIVE_SPAN / INTERVAL, abs=1)
    assert hall.as_dict()["passes"] == 3


def test_the_evaluation_drives_the_workers_reader_and_detection_stage(
        stage: DetectionStage, played: tuple[list[ClipResult], int]) -> None:
    results, frames_run = played
    assert inspect.signature(evaluate).parameters["reader_factory"].default is StreamReader
    assert [type(r) for r in CountingReader.made] == [CountingReader, CountingReader]
    for reader, result in zip(CountingReader.made, results):
        assert isinstance(reader.clock, SimulatedClock) and not reader.is_alive()  # fed, never started
        assert reader.stats.decoded == result.samples > 0 and reader.stats.keyframes > 0
        assert reader.stats.packets > reader.stats.decoded  # keyframe-only: the rest demuxed, not decoded
    assert frames_run == sum(r.samples for r in results)  # every sample went through the stage


def test_the_sweep_replays_what_the_live_run_raised(stage: DetectionStage, clips: list[Clip],
                                                    played: tuple[list[ClipResult], int]) -> None:
    rules, grid = CameraRules(), Grid((0.25, 0.9), (0.5,), ((3, 5), (1, 1)))
    live = stage.rules
    stage.rules = stage_rules(rules, grid)
    try:
        report = run(clips[:1], stage, Playing(INTERVAL), rules, grid)
    finally:
        stage.rules = live
    clip = report["clips"][0]  # type: ignore[index]
    assert [tuple(e.values()) for e in clip["events"]] == played[0][0].events
    points = {(p["flame"], tuple(p["persistence"])): p for p in report["sweep"]}  # type: ignore[attr-defined]
    assert points[(0.25, (3, 5))]["recall"] == report["totals"]["recall"] == 1.0  # type: ignore[index]
    assert points[(0.9, (3, 5))]["recall"] == 0.0  # no flame scores that high
    assert points[(0.25, (1, 1))]["median_time_to_alarm"] < points[(0.25, (3, 5))]["median_time_to_alarm"]


def test_the_frontier_keeps_the_points_nothing_beats() -> None:
    recall = np.array([1.0, 1.0, 0.5, 0.5, np.nan])
    delay = np.array([4.0, 6.0, 2.0, 8.0, np.nan])
    false_rate = np.array([1.0, 1.0, 0.0, 0.0, 0.0])
    assert frontier(recall, delay, false_rate).tolist() == [True, False, True, False, False]


def test_the_command_prints_one_json_object(model_files: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "negatives").mkdir()
    (tmp_path / "negatives" / "hall.mp4").symlink_to(ASSETS / "hall.mp4")
    done = subprocess.run([sys.executable, "-m", "api.cli", "eval", "video", str(tmp_path), "--json",
                           "--negative-span", "9", "--threads", "2"], check=False, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [c["clip"] for c in report["clips"]] == ["negatives/hall.mp4"]
    assert report["totals"]["false_events"] == 0 and report["totals"]["negatives"] == 1
    assert report["totals"]["recall"] is None and report["settings"]["persistence"] == list(CameraRules().persistence)


def test_manifest_rows_are_read_and_bad_ones_named_by_line(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "b.mp4").write_bytes(b"")
    good = tmp_path / "good.csv"
    good.write_text("file,class,fire_visible_s,split,notes\na.mp4,positive,3.5,dev,x\nb.mp4,negative,,val,y\n")
    assert read_manifest(good) == [Clip(tmp_path / "a.mp4", "a.mp4", True, 3.5),
                                   Clip(tmp_path / "b.mp4", "b.mp4", False, 0.0)]
    assert [c.name for c in read_manifest(good, split="val")] == ["b.mp4"]
    for rows, message in (("a.mp4,positive,0\nmissing.mp4,negative,0\n", "line 3: no such file: missing.mp4"),
                          ("a.mp4,maybe,0\n", "line 2: class must be positive or negative"),
                          ("a.mp4,positive,-1\n", "line 2: fire_visible_s must be seconds"),
                          ("../a.mp4,positive,0\n", "line 2: '../a.mp4' must be a path inside"),
                          ("a\x07.mp4,positive,0\n", "line 2: the file name holds control characters")):
        bad = tmp_path / "bad.csv"
        bad.write_text("file,class,fire_visible_s\n" + rows)
        with pytest.raises(InvalidInput, match=message):
            read_manifest(bad)
    done = subprocess.run([sys.executable, "-m", "api.cli", "eval", "video", "--manifest", str(bad)], check=False,
                          cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "bad.csv line 2: the file name holds control characters" in done.stderr
