"""People counting for the crowd rules: the people model (int8 as the workers run it, and
float32) against OpenCV's HOG people detector, the classic baseline, on real pictures whose
people were counted by eye.

- ultralytics' `bus.jpg` (4 people, two of them cut by the picture's edge) and `zidane.jpg`
  (2), shipped inside the ultralytics package of the models' export environment;
- every 60th frame of `../shared/media/one-by-one-person-detection.mp4` (an indoor hall, people
  walking in one by one: 0 or 1 person), 22 frames; frames 60 and 1200 are left out, as a head
  or a foot at the bottom edge cannot be counted either way.

A person counts when the detector's score reaches the camera default (0.4) for the model;
HOG's own default decision (SVM score > 0, grouped). Pictures are scaled to the analysis size
(longest side 640) like camera frames. Prints and writes bench/out/crowd.json: counted against
counted-by-eye, mean absolute error, pictures counted exactly, milliseconds per picture (one
thread). The goal: the model's count error below HOG's; exit 1 otherwise.

Run: `make bench` or `.venv/bin/python bench/crowd.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import describe as machine  # noqa: E402
from config.settings import load_settings  # noqa: E402
from detectors.rules import CameraRules  # noqa: E402
from ingest.detection import load_model  # noqa: E402
from ingest.fire_eval import scaled  # noqa: E402

SHARED = ROOT.parent / "shared"
OUT = Path(__file__).with_name("out")
HALL = SHARED / "media" / "one-by-one-person-detection.mp4"
EVERY = 60
# people counted by eye in every 60th frame of the hall clip (None: cut by the edge, left out)
HALL_COUNTS = [0, None, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, None, 1, 1, 0]
STILLS = {"bus.jpg": 4, "zidane.jpg": 2}
Shots = list[tuple[str, np.ndarray, int]]  # (name, RGB picture at the analysis size, people counted by eye)


def pictures(cache: Path) -> Shots:
    """(name, RGB picture at the analysis size, people counted by eye)."""
    assets = next((cache / "export-env" / "lib").glob("python3*/site-packages/ultralytics/assets"), None)
    if assets is None:
        raise SystemExit("ultralytics' sample pictures are missing: run `lookout models build` first")
    out = [(name, scaled(cv2.imread(str(assets / name))), count) for name, count in STILLS.items()]
    with av.open(str(HALL)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % EVERY == 0 and i // EVERY < len(HALL_COUNTS) and HALL_COUNTS[i // EVERY] is not None:
                out.append((f"hall frame {i}", scaled(frame.to_ndarray(format="bgr24")), HALL_COUNTS[i // EVERY]))
    return out


def hog_counts(shots: Shots) -> tuple[list[int], list[float]]:
    """HOG's count and milliseconds per picture, from bench/hog_count.py in an environment with
    OpenCV 4 (`bench/out/hog-env`, made on first use from PyPI)."""
    env = OUT / "hog-env"
    python = env / "bin" / "python"
    if not (env / ".ready").exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                        "opencv-python-headless<5", "numpy"], check=True)
        (env / ".ready").touch()
    with tempfile.TemporaryDirectory() as work:
        stored = Path(work) / "pictures.npz"
        np.savez(stored, **{str(i): picture for i, (_, picture, _) in enumerate(shots)})
        done = subprocess.run([str(python), str(Path(__file__).with_name("hog_count.py")), str(stored)],
                              capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["counts"], result["ms"]


def model_counts(precision: str, shots: Shots) -> tuple[list[int], list[float]]:
    """The people model's count and milliseconds per picture, at the camera default's score."""
    people = load_model(load_settings().model_cache_dir, "people", CameraRules().thresholds["person"],
                        precision=precision)
    counted, ms = [], []
    for _, picture, _ in shots:
        started = time.perf_counter()
        counted.append(len(people.detector.detect(picture[None], people.run)))
        ms.append(1000 * (time.perf_counter() - started))
    return counted, ms


def score(name: str, counted: tuple[list[int], list[float]], shots: Shots) -> dict[str, object]:
    truth = np.array([people for _, _, people in shots])
    found = np.array(counted[0])
    return {"detector": name, "people_by_eye": int(truth.sum()), "people_counted": int(found.sum()),
            "mean_abs_error": round(float(np.abs(found - truth).mean()), 3),
            "exact": f"{int((found == truth).sum())}/{len(truth)}",
            "ms_per_picture": round(float(np.mean(counted[1])), 1),
            "per_picture": {shot[0]: [int(f), int(t)] for shot, f, t in zip(shots, found, truth)}}


def main() -> int:
    cv2.setNumThreads(1)
    shots = pictures(load_settings().model_cache_dir)
    rows = [score("people model, int8", model_counts("int8", shots), shots),
            score("people model, fp32", model_counts("fp32", shots), shots),
            score("OpenCV 4 HOG people detector", hog_counts(shots), shots)]
    OUT.mkdir(exist_ok=True)
    results = {"machine": machine(), "pictures": len(shots), "rows": rows}
    (OUT / "crowd.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(json.dumps(results, indent=2, ensure_ascii=False))
    ok = rows[0]["mean_abs_error"] < rows[2]["mean_abs_error"]  # type: ignore[operator]
    print("the people model counts better than HOG" if ok else "the people model does NOT count better than HOG")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
