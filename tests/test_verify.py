"""The second look at candidate boxes: each piece of evidence on frames made for the purpose,
then the whole check on real frames — the clean footage's false smoke is removed, a real fire
stays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.detections import Detections
from detectors.verify import VerifyRules, evidence, person_cover, verified

KINDS = ("smoke", "flame")  # the fire model's classes, in its order


def boxes(rows: list[tuple[float, float, float, float]], classes: list[int], frames: list[int]) -> Detections:
    return Detections(np.array(rows, np.float32), np.full(len(rows), 0.8, np.float32), np.array(classes, np.int32),
                      np.array(frames, np.int32))


def test_flame_colour_contrast_and_motion_are_measured_inside_each_box() -> None:
    frames = np.full((2, 360, 640, 3), 128, np.uint8)
    frames[0, 100:200, 100:200] = (250, 140, 30)  # an orange-yellow flame colour
    frames[1, :, 320:] = 255  # right half white: a box across the edge has contrast
    frames[1, :, :320] = 0
    found = boxes([(100, 100, 200, 200), (300, 0, 640, 360), (0, 0, 300, 360), (280, 0, 360, 360)],
                  [1, 1, 0, 0], [0, 0, 1, 1])
    mask = np.zeros((2, 180, 320), bool)
    mask[1, :, 150:180] = True  # pixels 300..360 of frame 1 changed
    seen = evidence(frames, found, mask)
    assert seen.flame_share[0] == pytest.approx(1.0)
    assert seen.flame_share[1] == pytest.approx(0.0)
    assert seen.contrast[2] == pytest.approx(0.0)  # all black: flat
    assert seen.contrast[3] == pytest.approx(127.5, abs=1.0)  # half black, half white
    assert seen.motion[2] == pytest.approx(0.0) and seen.motion[3] == pytest.approx(0.75)
    still = evidence(frames, found, None)
    assert np.isnan(still.motion).all()  # stills: unknown, the motion test is skipped


def test_a_person_box_covering_a_smoke_box_explains_it_only_in_the_same_frame() -> None:
    smoke = boxes([(100, 100, 200, 300), (100, 100, 200, 300)], [0, 0], [0, 1])
    people = boxes([(90, 90, 210, 310)], [0], [0])
    cover = person_cover(smoke, people)
    assert cover[0] == pytest.approx(1.0) and cover[1] == 0.0


def test_each_kind_is_held_to_its_own_test() -> None:
    frames = np.zeros((1, 360, 640, 3), np.uint8)
    frames[0, :, 320:] = 200
    frames[0, 0:100, 0:100] = (250, 140, 30)
    found = boxes([(0, 0, 100, 100), (400, 100, 500, 200), (280, 0, 360, 360), (0, 200, 200, 360)],
                  [1, 1, 0, 0], [0, 0, 0, 0])
    ok = verified(found, KINDS, evidence(frames, found), VerifyRules())
    # flame-coloured flame kept, grey "flame" dropped; smoke across an edge kept, flat smoke dropped
    assert ok.tolist() == [True, False, True, False]
    moved = np.zeros((1, 180, 320), bool)
    still = verified(found, KINDS, evidence(frames, found, moved), VerifyRules())
    assert still.tolist() == [True, False, False, False]  # in a stream, smoke that did not move is background


def test_on_real_frames_the_verifier_removes_false_smoke_and_keeps_real_fire(model_files: dict[str, Path]) -> None:
    from ingest.detection import load_stage
    from ingest.fire_eval import video_frames
    from tests.conftest import MODEL_CACHE
    from tests.scenes import ASSETS, fire_scene

    # float32: the int8 model happens to see the false smoke below on only 2 of these 17 frames,
    # and this test needs a false positive present in most of them
    stage = load_stage(MODEL_CACHE, ["fire_smoke", "people"], None, precision="fp32")
    assert stage is not None
    # the thresholds this test was written at (flame 0.25, smoke 0.5): it is about what the
    # verifier removes, which must hold below the shipped smoke threshold too
    thresholds = {"flame": 0.25, "smoke": 0.5}
    kinds = np.asarray(stage.fire.manifest.class_kinds())

    def alarming_frames(found: Detections) -> set[int]:
        limit = np.array([thresholds[kind] for kind in kinds[found.class_id]], np.float32)
        return set(found.frame_index[found.confidence >= limit].tolist())

    # the parking lot seen from above, as bench/quality.py scales it: at the end of the clip
    # (its last 17 frames are parking-lot-empty.mp4) no car is in view, and the model calls the
    # empty grey asphalt smoke under a whole-frame box
    lot = np.stack(list(video_frames(ASSETS / "parking-lot-empty.mp4")))
    found = stage.fire.detector.detect(lot, stage.fire.run)
    assert len(alarming_frames(found)) >= 8, "the model alone should show the false smoke this test is about"
    confirmed, _ = stage.verify(lot, found, None, smoke_floor=0.0)
    assert alarming_frames(confirmed) == set()
    fire = fire_scene(stage.fire.detector, stage.fire.run)
    confirmed, _ = stage.confirmed(fire[None], None, smoke_floor=0.0)
    flames = confirmed.select(kinds[confirmed.class_id] == "flame")
    assert len(flames) and flames.confidence.max() > 0.6


def test_a_flame_box_needs_some_pixels_as_bright_as_a_flames_core() -> None:
    """Red and orange clothes, brick and skin pass the loose flame-colour rule over much of a box
    but hold no pixel as bright and saturated as a flame's core (the gate's strict rule): the same
    box with a few core pixels in it passes."""
    frames = np.full((2, 360, 640, 3), 90, np.uint8)
    frames[:, 100:200, 100:200] = (170, 80, 50)  # a dark red coat: loose rule yes, strict rule no
    frames[1, 140:150, 140:160] = (255, 200, 90)  # and in frame 1 a small bright flame core (2 % of the box)
    found = boxes([(100, 100, 200, 200), (100, 100, 200, 200)], [1, 1], [0, 1])
    seen = evidence(frames, found)
    assert (seen.flame_share > 0.9).all()
    assert seen.flame_core[0] == 0.0 and seen.flame_core[1] == pytest.approx(0.02, abs=0.005)
    assert verified(found, KINDS, seen, VerifyRules()).tolist() == [False, True]


def test_a_picture_flagged_for_colour_cast_or_blur_still_reaches_the_fire_model(model_files: dict[str, Path]) -> None:
    """A wall of flames casts the whole picture red, a room filling with smoke blurs it: such
    faults are reported (video_degraded) but the picture is still analysed; only a frozen one
    is not (it shows nothing new)."""
    from detectors.frames import FrameBatch
    from detectors.video_quality import BLURRED, CAST, FROZEN, REASONS, QualityReport
    from ingest.detection import load_stage
    from tests.conftest import MODEL_CACHE
    from tests.scenes import fire_scene

    stage = load_stage(MODEL_CACHE, ["fire_smoke"], None)
    assert stage is not None
    fire = fire_scene(stage.fire.detector, stage.fire.run)
    n = 3
    batch = FrameBatch(np.arange(1, n + 1, dtype=np.int64), np.zeros(n), np.stack([fire] * n))
    faults = np.zeros((n, len(REASONS)), bool)
    faults[0, CAST], faults[1, BLURRED], faults[2, FROZEN] = True, True, True
    report = QualityReport(faults, np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.ones(n),
                           np.ones((n, 180, 320), bool), [])
    stage.run(batch, report, now=1000.0)
    assert stage.figures.frames == n and stage.figures.inferred == 2  # the frozen picture alone was left out
