"""Scoring the fire chain: per-image maxima, alarm and class figures, the threshold sweep, and
`lookout eval fire` itself on a small labelled folder of real images."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from detectors.detections import Detections
from detectors.evaluation import evaluate, image_maxima, sweep
from tests.scenes import FIRE_SMOKE

ROOT = Path(__file__).resolve().parents[1]


def test_maxima_alarm_and_class_figures() -> None:
    found = Detections(np.array([[0, 0, 10, 10], [0, 0, 50, 50], [0, 0, 50, 50], [0, 0, 2, 2]], np.float32),
                       np.array([0.7, 0.4, 0.9, 0.99], np.float32), np.array([1, 1, 0, 1], np.int32),
                       np.array([0, 0, 1, 2], np.int32))
    maxima = image_maxima(found, ("smoke", "flame"), 4, min_area=10)  # the 2×2 box is too small
    assert maxima.tolist() == [[np.float32(0.7), 0.0], [0.0, np.float32(0.9)], [0.0, 0.0], [0.0, 0.0]]
    truth = np.array([[True, False], [False, True], [False, False], [True, True]])
    result = evaluate(truth, maxima, (0.5, 0.5))
    assert (result["positives"], result["negatives"], result["recall"], result["false_alarm_rate"]) == (3, 1, 0.6667, 0.0)
    assert result["classes"]["smoke"]["recall"] == 0.5 and result["classes"]["flame"]["precision"] == 1.0
    curve = sweep(maxima[truth.any(axis=1)], maxima[~truth.any(axis=1)], np.array([0.5, 0.8]))
    assert curve.shape == (4, 4) and curve[0].tolist() == [0.5, 0.5, 2 / 3, 0.0]


def test_a_set_without_negatives_has_no_false_alarm_rate_and_stays_valid_json() -> None:
    truth = np.array([[True, False], [True, False]])
    result = evaluate(truth, np.array([[0.9, 0.0], [0.1, 0.0]], np.float32), (0.5, 0.5))
    assert result["recall"] == 0.5 and result["false_alarm_rate"] is None
    assert result["classes"]["smoke"]["recall"] is None and result["classes"]["smoke"]["precision"] is None
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_eval_fire_command_maps_classes_by_name(model_files: dict[str, Path], tmp_path: Path) -> None:
    source = FIRE_SMOKE
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    labels = sorted((source / "labels").glob("*.txt"))[:6]
    for label in labels:
        image = next((source / "images").glob(label.stem + ".*"))
        shutil.copy(image, tmp_path / "images" / image.name)
        shutil.copy(label, tmp_path / "labels" / label.name)
    (tmp_path / "images" / "clean.jpg").write_bytes((source / "images" / next(
        (source / "images").iterdir()).name).read_bytes())  # an image without a label file is a negative
    (tmp_path / "data.yaml").write_text("names: [fire, smoke]\n")
    done = subprocess.run([sys.executable, "-m", "api.cli", "eval", "fire", str(tmp_path), "--json"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["images"], result["positives"], result["negatives"]) == (7, 6, 1)
    assert set(result["classes"]) == {"flame", "smoke"} and 0 <= result["recall"] <= 1
    swapped = subprocess.run([sys.executable, "-m", "api.cli", "eval", "fire", str(tmp_path), "--json",
                              "--classes", "smoke,fire"], cwd=ROOT, capture_output=True, text=True)
    assert json.loads(swapped.stdout)["classes"]["flame"]["positives"] == result["classes"]["smoke"]["positives"]


def test_eval_fire_counts_every_frame_of_clean_clips_as_negatives(model_files: dict[str, Path], tmp_path: Path) -> None:
    """`--clean DIR`: the frames of real clean footage (here every 25th frame of the hall clip of
    tests/assets, 15 s at 25 fps) are negatives beside the labelled images; a folder without video
    is refused with the option named."""
    import av

    source = FIRE_SMOKE
    (tmp_path / "set" / "images").mkdir(parents=True)
    (tmp_path / "set" / "labels").mkdir()
    label = min((source / "labels").glob("*.txt"))
    image = next((source / "images").glob(label.stem + ".*"))
    shutil.copy(image, tmp_path / "set" / "images" / image.name)
    shutil.copy(label, tmp_path / "set" / "labels" / label.name)
    (tmp_path / "clean").mkdir()
    shutil.copy(ROOT / "tests" / "assets" / "hall.mp4", tmp_path / "clean" / "hall.mp4")
    with av.open(str(tmp_path / "clean" / "hall.mp4")) as container:
        frames = sum(1 for _ in container.decode(video=0))
    command = [sys.executable, "-m", "api.cli", "eval", "fire", str(tmp_path / "set"), "--classes", "fire,smoke",
               "--json", "--clean", str(tmp_path / "clean"), "--frame-step", "25"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["positives"], result["negatives"]) == (1, -(-frames // 25))
    assert result["false_alarm_rate"] == 0.0  # an empty hall raises nothing
    (tmp_path / "empty").mkdir()
    refused = subprocess.run([*command[:-4], "--clean", str(tmp_path / "empty")], cwd=ROOT, capture_output=True,
                             text=True, check=False)
    assert refused.returncode != 0 and "no video files" in refused.stderr
