"""People counting in crowd zones (`detectors.crowd`, `ingest.crowd_counting`, the `rising`
level of `detectors.rules`, `lookout eval crowd`): the zone arithmetic on known density maps,
the switch between the person detector and the density map, the crowd interval, and the eval
over real pictures (ultralytics' samples, shipped inside its package)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from config.errors import InvalidInput
from detectors.crowd import (
    CountingRules,
    cell_centres,
    density_input,
    density_maps,
    fused,
    zone_density,
    zone_people,
)
from detectors.detections import Detections
from detectors.rules import CameraRules, RuleEngine, Zone
from detectors.yolo import YoloDetector
from ingest.crowd_counting import CrowdCounter
from ingest.crowd_eval import figures, load_counts
from models.manifest import manifests
from tests.conftest import MODEL_CACHE
from tests.lookout_cli import lookout

WHOLE = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
LEFT = ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))
RULES = CountingRules(density_floor=0.01, density_gain=1.0, detector_below=10)


def engine_with(**zones: tuple[int, tuple[tuple[float, float], ...]]) -> RuleEngine:
    by_camera: dict[int, list[Zone]] = {}
    for name, (camera, polygon) in zones.items():
        by_camera.setdefault(camera, []).append(Zone(name, polygon, True, area_m2=10.0))
    return RuleEngine({camera: CameraRules(zones=tuple(z)) for camera, z in by_camera.items()})


def test_zone_density_is_the_mass_inside_each_zone_of_the_frames_own_camera() -> None:
    engine = engine_with(whole=(1, WHOLE), left=(1, LEFT), other=(2, WHOLE))
    maps = np.zeros((2, 10, 20), np.float32)
    maps[0, :, :10] = 0.2  # 20 people on camera 1's left half
    maps[0, :, 10:] = 0.05  # 5 on its right half
    maps[1] = 0.005  # haze under the floor on camera 2
    got = zone_density(maps, np.array([1, 2]), engine.zones, RULES)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got[0], [25.0, 20.0, 0.0], rtol=1e-5)  # whole, left; camera 2's zone: not this frame
    np.testing.assert_allclose(got[1], [0.0, 0.0, 0.0])  # the haze is gone; camera 1's zones are not camera 2's
    half = zone_density(maps[:1], np.array([1]), engine.zones, CountingRules(density_floor=0.01, density_gain=0.5))
    np.testing.assert_allclose(half[0, :2], [12.5, 10.0], rtol=1e-5)


def test_people_count_at_their_feet_above_the_threshold() -> None:
    engine = engine_with(left=(1, LEFT))
    boxes = np.array([[10, 10, 50, 100], [400, 10, 450, 100], [60, 10, 90, 100], [20, 20, 40, 90]], np.float32)
    people = Detections(boxes, np.array([0.9, 0.9, 0.1, 0.5], np.float32), np.array([0, 0, 0, 2], np.int32),
                        np.zeros(4, np.int32))
    got = zone_people(people, 0, np.array([1]), (360, 640), engine.zones, RULES)
    assert got.tolist() == [[1.0]]  # right half out; the 0.1 box is no one; class 2 is not a person


def test_the_detector_counts_few_people_and_the_density_map_many() -> None:
    detected = np.array([[3.0], [4.0], [12.0], [9.0]])
    density = np.array([[6.0], [40.0], [8.0], [9.5]])
    assert fused(detected, density, RULES).ravel().tolist() == [3.0, 40.0, 12.0, 9.0]


def test_density_input_is_normalised_and_cut_to_whole_cells() -> None:
    frames = np.full((2, 360, 640, 3), 124, np.uint8)
    tensor = density_input(frames, 384)
    assert tensor.shape == (2, 3, 216, 384) and tensor.dtype == np.float32
    assert abs(float(tensor[0, 0].mean()) - (124 / 255 - 0.485) / 0.229) < 1e-4
    assert cell_centres((2, 4))[[0, -1]].tolist() == [[0.125, 0.25], [0.875, 0.75]]
    with pytest.raises(ValueError, match="density_gain"):
        CountingRules(density_gain=0)


def rising_engine(rate: float | None, window: float = 10.0) -> RuleEngine:
    rules = CameraRules(zones=(Zone("gate", WHOLE, True, area_m2=100.0),), crowd_levels=(2.0, 4.0),
                        crowd_min_seconds=0, crowd_rise_per_minute=rate, crowd_rise_seconds=window)
    return RuleEngine({1: rules})


def levels(engine: RuleEngine, counts: list[float], step: float = 2.0) -> list[tuple[float, str]]:
    out = []
    for i, count in enumerate(counts):
        events, _ = engine.crowd_events(np.array([[count]]), np.array([1]), np.array([step * i]))
        out += [(e.at, e.evidence["level"]) for e in events]
    return out


def test_a_fast_growing_count_raises_rising_once_before_the_density_levels() -> None:
    growing = [5, 5, 6, 12, 18, 24, 30, 36, 42, 42, 42, 43, 42]  # +3 people per 2 s = 90 per minute
    got = levels(rising_engine(60.0), growing)
    assert [level for _, level in got] == ["rising"]
    assert got[0][0] <= 10.0  # within the first window of growth
    events, _ = rising_engine(60.0).crowd_events(np.array([[5.0]]), np.array([1]), np.array([0.0]))
    assert events == []  # one count is no rate


def test_slow_growth_noise_and_no_rate_raise_nothing() -> None:
    assert levels(rising_engine(60.0), [20, 21, 20, 22, 21, 23, 22, 24, 23, 25]) == []  # 1.5 per minute
    assert levels(rising_engine(None), [5, 10, 20, 40, 80, 120]) == []  # rising switched off; 1.2/m² is normal


def test_rising_is_raised_again_only_after_the_growth_calmed() -> None:
    wave = [5, 10, 15, 20, 25, 25, 25, 25, 25, 25, 25, 25, 30, 35, 40, 45, 50]
    got = levels(rising_engine(60.0), wave)
    assert [level for _, level in got] == ["rising", "rising"]
    assert got[1][0] >= 24.0  # the second wave, not the first still going


def test_rising_is_not_raised_above_the_pre_alarm_density() -> None:
    rules = CameraRules(zones=(Zone("gate", WHOLE, True, area_m2=10.0),), crowd_levels=(2.0, 4.0),
                        crowd_min_seconds=0, crowd_rise_per_minute=60.0, crowd_rise_seconds=10.0)
    got = levels(RuleEngine({1: rules}), [25, 27, 30, 33, 36, 39, 42])  # 2.5/m² and up: already a pre-alarm
    assert [level for _, level in got] == ["pre_alarm", "alarm"]


def test_counts_csv_rows_are_checked_with_their_line(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"x")
    table = tmp_path / "counts.csv"
    for body, message in (("file,count\na.jpg,3\nb.jpg,2\n", "line 3: no picture 'b.jpg'"),
                          ("file,count\na.jpg,-1\n", "line 2: count '-1'"),
                          ("file,count\na.jpg,²\n", "line 2: count '²'"),
                          ("file,count\na.jpg,٣\n", "line 2: count"),
                          ("file,count\na.jpg," + "9" * 5000 + "\n", "line 2: count"),
                          ("file,count\na.jpg,2000000\n", "line 2: count"),
                          ("file,count\n../counts.csv,1\n", "line 2: no picture"),
                          ("name,people\na.jpg,1\n", "header")):
        table.write_text(body)
        with pytest.raises(InvalidInput, match=message):
            load_counts(tmp_path)
    table.write_bytes(b"file,count\na.jpg,3\n\xff\xfe,1\n")
    with pytest.raises(InvalidInput, match="not UTF-8 text"):
        load_counts(tmp_path)
    table.write_text("\ufefffile,count,band\na.jpg,3,sparse\n")  # a spreadsheet's byte-order mark
    assert load_counts(tmp_path).counts.tolist() == [3]


def test_figures_by_band() -> None:
    result = figures(np.array([10, 10, 50, 100]), np.array([12, 8, 40, 100]))
    assert result["overall"]["mae"] == 3.5  # type: ignore[index]
    bands = result["bands"]
    assert bands["1-20"]["mae_percent"] == 20.0 and bands["21-80"]["mean_counted"] == 40.0  # type: ignore[index]
    assert bands["81+"]["mae"] == 0.0  # type: ignore[index]


def test_eval_crowd_counts_real_pictures_through_the_worker_path(model_files: dict[str, Path],
                                                                tmp_path: Path) -> None:
    assets = next((MODEL_CACHE / "export-env").glob("lib/python*/site-packages/ultralytics/assets"))
    (tmp_path / "images").mkdir()
    for name in ("bus.jpg", "zidane.jpg"):
        cv2.imwrite(str(tmp_path / "images" / name), cv2.imread(str(assets / name)))
    (tmp_path / "counts.csv").write_text("file,count\nbus.jpg,4\nzidane.jpg,2\n")
    env = {**os.environ, "LOOKOUT_MODEL_CACHE_DIR": str(MODEL_CACHE), "LOOKOUT_DATA_DIR": str(tmp_path / "data")}
    result = json.loads(lookout(env, "eval", "crowd", str(tmp_path), "--json", "--threads", "1").strip().splitlines()[-1])
    assert [(p["file"], p["counted"]) for p in result["pictures"]] == [("bus.jpg", 4), ("zidane.jpg", 2)]
    assert result["overall"]["mae"] == 0.0 and result["bands"]["1-20"]["pictures"] == 2


def counter_for_due(interval: float = 10.0, max_batch: int = 8) -> CrowdCounter:
    manifest = manifests()["crowd_people"]
    detector = YoloDetector(manifest.classes, (384, 640), np.full(len(manifest.classes), 0.2, np.float32))
    return CrowdCounter(detector, lambda t: t, manifest, lambda t: t, CountingRules(max_batch=max_batch), interval)


def test_only_crowd_cameras_are_counted_once_per_interval_and_a_batch_at_a_time() -> None:
    counter = counter_for_due(interval=10.0, max_batch=2)
    ids = np.array([1, 2, 3, 3, 4, 5])
    crowd = np.array([2, 3, 4, 5])
    usable = np.array([True, True, True, True, False, True])  # camera 4 frozen
    assert ids[counter.due(ids, crowd, 0.0, usable)].tolist() == [2, 3]  # one row of 3; at most 2 a batch
    assert ids[counter.due(ids, crowd, 1.0, usable)].tolist() == [5]  # 4 is frozen: not marked, still due
    assert ids[counter.due(ids, crowd, 2.0)].tolist() == [4]
    assert ids[counter.due(ids, crowd, 9.0)].tolist() == []
    assert ids[counter.due(ids, crowd, 10.0)].tolist() == [2, 3]
    counter.recount(np.array([5]))
    assert ids[counter.due(ids, crowd, 10.5)].tolist() == [5]
    counter.forget({2})
    assert ids[counter.due(ids, crowd, 11.0)].tolist() == [2]  # forgotten: a new camera


def test_the_density_map_counts_a_crowd_the_detector_cannot(model_files: dict[str, Path]) -> None:
    """Real people, 36 in one frame (bus.jpg's four, tiled 3×3): the person detector finds
    fewer than the crowd, the density map about all of them, and the count is the map's."""
    from ingest.detection import load_crowd_counter

    counter = load_crowd_counter(MODEL_CACHE)
    assets = next((MODEL_CACHE / "export-env").glob("lib/python*/site-packages/ultralytics/assets"))
    bus = cv2.cvtColor(cv2.imread(str(assets / "bus.jpg")), cv2.COLOR_BGR2RGB)
    tile = cv2.resize(bus, (640 // 3, 360 // 3), interpolation=cv2.INTER_AREA)
    crowd = cv2.resize(np.tile(tile, (3, 3, 1)), (640, 360))[None]
    engine = engine_with(whole=(1, WHOLE))
    people = counter.people.detect(crowd, counter.people_run)
    detected = zone_people(people, counter.person_class, np.array([1]), (360, 640), engine.zones, counter.rules)
    density = zone_density(density_maps(crowd, counter.density_run, counter.rules), np.array([1]), engine.zones,
                           counter.rules)
    assert detected[0, 0] < 30 and 30 <= density[0, 0] <= 44
    assert counter.count(crowd, np.array([1]), engine.zones)[0, 0] == density[0, 0]
    assert zone_density(np.zeros((1, 27, 48), np.float32), np.array([1]), engine.zones, counter.rules)[0, 0] == 0


def test_the_rising_rule_is_validated_where_technicians_write_it() -> None:
    from pydantic import ValidationError

    from registry.rules_spec import RulesSpec

    assert RulesSpec.model_validate({"crowd_rise_per_minute": None}).to_rules().crowd_rise_per_minute is None
    assert RulesSpec.model_validate({}).to_rules().crowd_rise_per_minute == 30.0
    for body, field in (({"crowd_rise_per_minute": -5}, "crowd_rise_per_minute"),
                        ({"crowd_rise_per_minute": "fast"}, "crowd_rise_per_minute"),
                        ({"crowd_rise_seconds": 5}, "crowd_rise_seconds"),
                        ({"crowd_rise_seconds": 1e9}, "crowd_rise_seconds")):
        with pytest.raises(ValidationError, match=field):
            RulesSpec.model_validate(body)
