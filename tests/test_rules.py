"""Zones, persistence, cooldown, armed hours and crowd levels, proven on real frames through the
real models: fire scenes and clean footage from tests/assets,
people from ultralytics' own sample pictures (shipped inside its package)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.frames import FrameBatch
from detectors.rules import CameraRules, RuleEngine, Zone
from detectors.yolo import YoloDetector
from ingest.model_runtime import onnx_runner
from models.build import verified_model
from models.manifest import manifests
from tests.conftest import MODEL_CACHE
from tests.scenes import SIZE, clean_samples, fire_scene

WHOLE = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))


class Models:
    def __init__(self) -> None:
        found = manifests()
        self.fire_manifest, self.people_manifest = found["fire_smoke"], found["people"]
        self.fire = YoloDetector(self.fire_manifest.classes, (384, 640), np.full(2, 0.25, np.float32))
        self.people = YoloDetector(self.people_manifest.classes, (384, 640), np.full(2, 0.25, np.float32))
        # the precision the workers run by default
        self.run_fire = onnx_runner(verified_model(MODEL_CACHE, self.fire_manifest, "int8"))
        self.run_people = onnx_runner(verified_model(MODEL_CACHE, self.people_manifest, "int8"))


@pytest.fixture(scope="module")
def models(model_files: dict[str, Path]) -> Models:
    return Models()  # model_files: built (float32 and int8) before any test uses them


@pytest.fixture(scope="module")
def fire_frame(models: Models) -> np.ndarray:
    return fire_scene(models.fire, models.run_fire)


@pytest.fixture(scope="module")
def clean_frames() -> list[np.ndarray]:
    return clean_samples(8)


def fire_ticks(models: Models, engine: RuleEngine, frames_per_tick: list[dict[int, np.ndarray]],
               start: float = 0.0, step: float = 2.0, minute: float = 600) -> list[tuple[int, str, float]]:
    events = []
    for t, frames in enumerate(frames_per_tick):
        ids = sorted(frames)
        batch = FrameBatch.stack(ids, [start + step * t] * len(ids), [frames[c] for c in ids])
        found = models.fire.detect(batch.frames, models.run_fire)
        for event in engine.fire_events(found, models.fire_manifest.class_kinds(), batch.camera_ids,
                                        batch.timestamps, SIZE, minute):
            events.append((event.camera_id, event.kind, event.at))
    return events


def test_zones_persistence_blips_cooldown_and_armed_hours(models: Models, fire_frame: np.ndarray,
                                                          clean_frames: list[np.ndarray]) -> None:
    left_strip = Zone("left strip", ((0.0, 0.0), (0.2, 0.0), (0.2, 1.0), (0.0, 1.0)))
    middle = Zone("boiler chimney", ((0.25, 0.0), (0.75, 0.0), (0.75, 1.0), (0.25, 1.0)), include=False)
    engine = RuleEngine({
        1: CameraRules(zones=(left_strip,)),  # fire outside the only include zone
        2: CameraRules(zones=(middle,)),  # fire inside an exclusion
        3: CameraRules(persistence=(3, 5), cooldown_seconds=60),
        4: CameraRules(persistence=(3, 5)),  # a single-sample blip
        5: CameraRules(armed=((1200, 1320),)),  # armed 20:00-22:00 only; it is 10:00
        6: CameraRules(zones=(Zone("yard", WHOLE), middle)),  # the exclusion wins over the include
    })
    ticks = []
    for t in range(8):
        fire_or_clean = fire_frame if t == 0 else clean_frames[t]
        ticks.append({1: fire_frame, 2: fire_frame, 3: fire_frame, 4: fire_or_clean, 5: fire_frame, 6: fire_frame})
    events = fire_ticks(models, engine, ticks)
    assert events == [(3, "flame", 4.0)]  # the third sample of 3-of-5, once; cooldown holds to 14 s

    later = fire_ticks(models, engine, [{3: fire_frame}] * 4, start=70.0)  # cooldown over
    assert later == [(3, "flame", 70.0)]


def test_k_of_n_counts_samples_not_consecutive_ones(models: Models, fire_frame: np.ndarray,
                                                    clean_frames: list[np.ndarray]) -> None:
    engine = RuleEngine({7: CameraRules(persistence=(3, 5))})
    pattern = [fire_frame, clean_frames[0], fire_frame, clean_frames[1], fire_frame, clean_frames[2]]
    assert fire_ticks(models, engine, [{7: f} for f in pattern]) == [(7, "flame", 8.0)]
    engine = RuleEngine({8: CameraRules(persistence=(3, 5))})
    sparse = [fire_frame, clean_frames[0], clean_frames[1], fire_frame, clean_frames[2], clean_frames[3], fire_frame]
    assert fire_ticks(models, engine, [{8: f} for f in sparse]) == []  # never 3 within any 5


def ultralytics_sample(name: str) -> np.ndarray:
    found = list((MODEL_CACHE / "export-env").glob(f"lib/python*/site-packages/ultralytics/assets/{name}"))
    assert found, name
    return cv2.cvtColor(cv2.imread(str(found[0])), cv2.COLOR_BGR2RGB)


def test_crowd_count_density_and_levels_on_real_people(model_files: dict[str, Path]) -> None:
    from ingest.detection import load_crowd_counter

    counter = load_crowd_counter(MODEL_CACHE)
    bus, zidane = ultralytics_sample("bus.jpg"), ultralytics_sample("zidane.jpg")
    rules = CameraRules(zones=(Zone("square", WHOLE, area_m2=2.0),), crowd_levels=(1.5, 2.5), crowd_min_seconds=4)
    engine = RuleEngine({1: rules, 2: rules})
    frames = np.stack([cv2.resize(bus, SIZE[::-1]), cv2.resize(zidane, SIZE[::-1])])
    events, counts = [], {}
    for t in range(4):  # 0, 2, 4, 6 s
        new, counts = engine.crowd_events(counter.count(frames, np.array([1, 2]), engine.zones), np.array([1, 2]),
                                          np.full(2, 2.0 * t))
        events += new
    assert counts == {(1, "square"): 4, (2, "square"): 2}  # the four on the bus picture, the two men
    # 4 people on 2 m² = 2.0/m² ≥ 1.5: pre-alarm, once, after holding 4 s; 2 people = 1.0/m²: nothing
    assert [(e.camera_id, e.evidence["level"], e.evidence["count"], e.at) for e in events] == [(1, "pre_alarm", 4, 4.0)]
    tighter = RuleEngine({1: CameraRules(zones=(Zone("gate", WHOLE, area_m2=1.5),), crowd_levels=(1.5, 2.5),
                                         crowd_min_seconds=0)})
    alarm, _ = tighter.crowd_events(counter.count(frames[:1], np.array([1]), tighter.zones), np.array([1]),
                                    np.array([0.0]))
    assert [e.evidence["level"] for e in alarm] == ["alarm"]  # 4 / 1.5 m² = 2.7/m²
