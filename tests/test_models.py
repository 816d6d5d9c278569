"""The models come from registry packages by hash, become ONNX once, and run on ONNX Runtime
alone; the class mapping is checked on real labelled fire and smoke images."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from config.errors import ConfigError
from detectors.yolo import YoloDetector
from ingest.model_runtime import onnx_runner
from models.build import build, model_path, verified_model
from models.manifest import load_manifest, manifests
from tests.conftest import MODEL_CACHE
from tests.scenes import FIRE_SMOKE as DATASET

DATASET_CLASSES = {0: "fire", 1: "smoke"}  # this dataset's ids (the model numbers them the other way)


def test_every_manifest_names_its_package_hash_licence_and_kinds() -> None:
    found = manifests()
    assert set(found) == {"fire_smoke", "people", "crowd_people", "crowd_density"}
    assert found["fire_smoke"].class_kinds() == ("smoke", "flame")
    assert found["people"].class_kinds() == ("person", "person")
    crowd = found["crowd_people"].class_kinds()  # COCO: only its person class means anything here
    assert len(crowd) == 80 and crowd[0] == "person" and set(crowd[1:]) == {"ignored"}
    assert found["crowd_density"].format == "csrnet" and found["crowd_density"].classes == ()
    for manifest in found.values():
        assert len(manifest.source.sha256) == 64 and manifest.source.version and manifest.licence


def test_a_manifest_with_an_unknown_format_or_kind_is_refused(tmp_path: Path) -> None:
    raw = json.loads(manifests()["crowd_people"].path.read_text())
    for change, message in (({"format": "caffe"}, "format must be one of"),
                            ({"kinds": {"person": "weapon"}}, "kinds must name classes"),
                            ({"kinds": {"dragon": "flame"}}, "kinds must name classes")):
        broken = tmp_path / "broken.json"
        broken.write_text(json.dumps({**raw, **change}))
        with pytest.raises(ConfigError, match=message):
            load_manifest(broken)


def test_the_density_model_is_verified_like_the_others(model_files: dict[str, Path]) -> None:
    manifest = manifests()["crowd_density"]
    for precision in ("int8", "fp32"):
        assert verified_model(MODEL_CACHE, manifest, precision).exists()
    with pytest.raises(ConfigError, match="unknown model precision"):
        verified_model(MODEL_CACHE, manifest, "fp16")


def test_a_weights_file_that_does_not_match_its_hash_is_refused(model_files: dict[str, Path], tmp_path: Path) -> None:
    raw = json.loads(manifests()["people"].path.read_text())
    raw["source"]["sha256"] = "0" * 64
    tampered = tmp_path / "people.json"
    tampered.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="has sha256 5f6f620d"):
        build(tmp_path / "cache", {"people": load_manifest(tampered)}, env_dir=MODEL_CACHE / "export-env")
    assert not (tmp_path / "cache" / "people.onnx").exists()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_changed_onnx_file_is_refused_until_rebuilt(model_files: dict[str, Path], tmp_path: Path,
                                                      precision: str) -> None:
    manifest = manifests()["fire_smoke"]
    for name in ("fire_smoke.onnx", "fire_smoke.int8.onnx", "fire_smoke.stamp.json"):
        shutil.copy(MODEL_CACHE / name, tmp_path / name)
    changed = model_path(tmp_path, manifest, precision)
    assert verified_model(tmp_path, manifest, precision) == changed
    with changed.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(ConfigError, match="changed since it was built"):
        verified_model(tmp_path, manifest, precision)
    other = "fp32" if precision == "int8" else "int8"
    assert verified_model(tmp_path, manifest, other) == model_path(tmp_path, manifest, other)
    with pytest.raises(ConfigError, match="not built"):
        verified_model(tmp_path / "empty", manifest, precision)
    with pytest.raises(ConfigError, match="unknown model precision"):
        verified_model(tmp_path, manifest, "fp16")


def test_run_time_has_neither_torch_nor_ultralytics() -> None:
    code = ("import importlib.util, sys; import ingest.model_runtime, detectors.yolo, ingest.worker, api.app; "
            "print(sorted(m for m in ('torch', 'ultralytics', 'torchvision') "
            "if importlib.util.find_spec(m) or m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def labelled(kind: str, limit: int) -> list[Path]:
    """Dataset images whose labels are all of one class."""
    found = []
    for label in sorted((DATASET / "labels").glob("*.txt")):
        classes = {DATASET_CLASSES[int(line.split()[0])] for line in label.read_text().splitlines() if line.strip()}
        if classes == {kind}:
            found.extend(DATASET.joinpath("images").glob(label.stem + ".*"))
        if len(found) >= limit:
            break
    return found[:limit]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_fire_model_names_fire_and_smoke_by_class_name(model_files: dict[str, Path], precision: str) -> None:
    manifest = manifests()["fire_smoke"]
    detector = YoloDetector(manifest.classes, manifest.input_size, np.full(2, 0.25, np.float32))
    run = onnx_runner(verified_model(MODEL_CACHE, manifest, precision))
    kinds = np.array(manifest.class_kinds())
    for kind, images in (("flame", labelled("fire", 12)), ("smoke", labelled("smoke", 12))):
        frames = np.stack([cv2.cvtColor(cv2.resize(cv2.imread(str(p)), (640, 360)), cv2.COLOR_BGR2RGB) for p in images])
        found = detector.detect(frames, run)
        hit = np.zeros(len(frames), bool)
        hit[found.frame_index[kinds[found.class_id] == kind]] = True
        assert hit.mean() >= 0.75, (kind, hit)


def test_the_int8_model_scores_like_the_float_one(model_files: dict[str, Path]) -> None:
    """int8 is a speed-up, not another model: on real fire and smoke pictures its best score per
    class stays close to float32's (a broken calibration or a quantized output drifts by far more)."""
    manifest = manifests()["fire_smoke"]
    detector = YoloDetector(manifest.classes, manifest.input_size, np.full(2, 0.05, np.float32))
    images = labelled("fire", 12) + labelled("smoke", 12)
    frames = np.stack([cv2.cvtColor(cv2.resize(cv2.imread(str(p)), (640, 360)), cv2.COLOR_BGR2RGB) for p in images])
    best = {}
    for precision in ("fp32", "int8"):
        found = detector.detect(frames, onnx_runner(verified_model(MODEL_CACHE, manifest, precision)))
        scores = np.zeros((len(frames), 2), np.float32)
        np.maximum.at(scores, (found.frame_index, found.class_id), found.confidence)
        best[precision] = scores
    drift = np.abs(best["int8"] - best["fp32"])
    assert drift.mean() < 0.05 and np.median(drift) < 0.03, (drift.mean(), np.median(drift))
