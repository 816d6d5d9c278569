"""People counting for the crowd rules, measured on real crowds: the shipped counter (the
`crowd_people` YOLO11n boxes fused with the `crowd_density` CSRNet map, through the worker's own
`DetectionStage.crowd_events`) side by side with the counter it replaces (boxes of the `people`
model, a YOLOv8n fall-detection fine-tune, from the camera default person score 0.4 up).

Why these three checks:
- crowd-dev: 118 pictures of SCUT-HEAD Part B (Peng et al., ICPR 2018), heads counted by the
  dataset's annotators, from 1 to a few hundred people (`../shared/datasets/crowd-dev/`). Figures
  per band of true count (1-20, 21-80, 81+), as box detectors and density maps fail in opposite
  bands; goals: MAE at most 15 % of the mean true count overall, 20 % in each band.
- the sparse check: every 60th frame of `../shared/media/one-by-one-person-detection.mp4` (an
  indoor hall, 0 or 1 person; frames 60 and 1200 left out, a head or foot cut by the edge) and
  ultralytics' `bus.jpg` (4) and `zidane.jpg` (2) from the models' export environment, counted by
  eye. The density map must not invent people in an empty hall: goal, every hall frame within one.
- cost: seconds of one core per count (one ONNX Runtime thread), and so cores per crowd camera at
  the worker's default crowd interval — what sizing a worker needs.

Pictures are scaled to the analysis size (longest side 640) as camera frames are. Exit 1 when a
goal fails. Writes bench/out/crowd.json. Run: `make bench` or `.venv/bin/python bench/crowd.py`
(`--limit N`: N pictures of crowd-dev spread over the bands, for trying changes quickly).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import describe as machine
from config.settings import load_settings
from config.worker import WorkerSettings
from detectors.rules import CameraRules
from detectors.yolo import Run
from ingest.crowd_eval import BANDS, count_pictures, figures, load_counts
from ingest.detection import DetectionStage, Model, load_model, load_stage
from ingest.fire_eval import scaled

SHARED = ROOT.parent / "shared"
DEV = SHARED / "datasets" / "crowd-dev"
DATA = "SCUT-HEAD Part B (Peng et al., ICPR 2018)"
OUT = Path(__file__).with_name("out")
HALL = SHARED / "media" / "one-by-one-person-detection.mp4"
EVERY = 60
# people counted by eye in every 60th frame of the hall clip (None: cut by the edge, left out)
HALL_COUNTS = [0, None, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, None, 1, 1, 0]
STILLS = {"bus.jpg": 4, "zidane.jpg": 2}
GOAL_OVERALL, GOAL_BAND, GOAL_HALL = 15.0, 20.0, 1  # MAE % of the mean count; people per hall frame


def timed(seconds: dict[str, float], key: str, run: Run) -> Run:
    """`run` with its wall time added to `seconds[key]`: splits the crowd count between models."""
    def timed_run(tensor: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        try:
            return run(tensor)
        finally:
            seconds[key] += time.perf_counter() - started
    return timed_run


def old_counts(model: Model, files: list[Path], threshold: float) -> tuple[np.ndarray, float]:
    """(I,) people the old counter finds (its boxes from `threshold` up, both classes are people)
    and its seconds per picture. One picture per call: the scaled pictures differ in shape."""
    counted, started = np.zeros(len(files), np.int64), time.perf_counter()
    for index, path in enumerate(files):
        found = model.detector.detect(scaled(cv2.imread(str(path)))[None], model.run)
        counted[index] = int((found.confidence >= threshold).sum())
    return counted, (time.perf_counter() - started) / max(len(files), 1)


def sparse_pictures(cache: Path, work: Path) -> tuple[list[Path], np.ndarray]:
    """The sparse check's pictures (the stills, then the hall frames written into `work`) and
    their people counted by eye."""
    assets = next((cache / "export-env" / "lib").glob("python3*/site-packages/ultralytics/assets"), None)
    if assets is None:
        raise SystemExit("ultralytics' sample pictures are missing: run `lookout models build` first")
    files, truth = [assets / name for name in STILLS], list(STILLS.values())
    with av.open(str(HALL)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % EVERY or i // EVERY >= len(HALL_COUNTS) or HALL_COUNTS[i // EVERY] is None:
                continue
            path = work / f"hall frame {i:04d}.png"
            cv2.imwrite(str(path), frame.to_ndarray(format="bgr24"))
            files.append(path)
            truth.append(HALL_COUNTS[i // EVERY])
    return files, np.array(truth, np.int64)


def spread(total: int, limit: int | None) -> np.ndarray:
    """Indices of `limit` pictures spread evenly over `total` (crowd-dev is in band order)."""
    if limit is None or limit >= total:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, max(limit, 1)).round().astype(np.int64))


def ratio(new: float | None, old: float | None) -> float | None:
    return round(new / old, 2) if new is not None and old else None


def print_table(results: dict[str, object]) -> None:
    """The figures as a table: one row per band, the shipped and the old counter side by side."""
    new, old = results["shipped"], results["old"]
    assert isinstance(new, dict) and isinstance(old, dict)
    print(f"\nPeople counted on {results['pictures']} pictures of {DATA}, one thread")
    print(f"{'band':<8}{'pictures':>9}{'true':>8} | {'shipped':>8}{'MAE':>7}{'MAE%':>7} | "
          f"{'old':>8}{'MAE':>7}{'MAE%':>7} | {'new/old MAE%':>12}")
    for band in ["overall", *(name for name, _, _ in BANDS)]:
        a = new["overall"] if band == "overall" else new["bands"][band]
        b = old["overall"] if band == "overall" else old["bands"][band]
        if not a["pictures"]:
            continue
        cells = [f"{a['mean_counted']:>8}{a['mae']:>7}{a['mae_percent']!s:>7}",
                 f"{b['mean_counted']:>8}{b['mae']:>7}{b['mae_percent']!s:>7}"]
        print(f"{band:<8}{a['pictures']:>9}{a['mean_true']:>8} | {cells[0]} | {cells[1]} | "
              f"{ratio(a['mae_percent'], b['mae_percent'])!s:>12}")
    print("(true, shipped, old: mean people per picture; MAE: mean absolute error; MAE%: of the mean true)")
    sparse = results["sparse"]
    assert isinstance(sparse, dict)
    shown = {name: row for name, row in sparse["per_picture"].items()
             if not name.startswith("hall") or row[1] != row[0] or row[2] != row[0]}
    print("\nSparse check, people by eye / shipped / old (hall frames only where one is wrong): "
          + ", ".join(f"{name} {'/'.join(map(str, row))}" for name, row in shown.items()))
    print(f"hall frames: shipped within one person on {sparse['hall_within_one']}, max error "
          f"{sparse['hall_max_error']}; old within one on {sparse['old_hall_within_one']}")
    cost = results["cost"]
    assert isinstance(cost, dict)
    print(f"\nCost: {cost['seconds_per_count']} s of one core per count (people model "
          f"{cost['people_model_seconds']} s, density model {cost['density_model_seconds']} s); one count "
          f"per {cost['crowd_interval_seconds']} s = {cost['cores_per_crowd_camera']} cores per crowd camera "
          f"(old counter: {cost['old_seconds_per_picture']} s per picture)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="count only N crowd-dev pictures (spread over bands)")
    limit = parser.parse_args(argv).limit
    if not (DEV / "counts.csv").is_file() or not HALL.is_file():
        raise SystemExit(f"bench/crowd.py needs {DEV} ({DATA}) and {HALL}: the shared folder beside the repository")
    cv2.setNumThreads(1)
    settings = load_settings()
    cache = settings.model_cache_dir
    dev = load_counts(DEV)
    chosen = spread(len(dev.files), limit)
    files, true = [dev.files[i] for i in chosen], dev.counts[chosen]

    stage = load_stage(cache, ["fire_smoke", "crowd_people", "crowd_density"], None, threads=1, precision="int8")
    assert isinstance(stage, DetectionStage) and stage.crowd is not None
    split = {"people": 0.0, "density": 0.0}
    stage.crowd.people_run = timed(split, "people", stage.crowd.people_run)
    stage.crowd.density_run = timed(split, "density", stage.crowd.density_run)
    old_model = load_model(cache, "people", 0.2, threads=1)
    threshold = CameraRules().thresholds["person"]

    counted = count_pictures(stage, files)
    crowd_seconds, counts = stage.figures.seconds["crowd"], max(stage.figures.counted, 1)
    people_seconds, density_seconds = split["people"], split["density"]
    old, old_seconds = old_counts(old_model, files, threshold)

    with tempfile.TemporaryDirectory() as work:
        sparse_files, sparse_true = sparse_pictures(cache, Path(work))
        stage.forget(set(range(1, len(files) + 1)))  # count_pictures reuses camera ids 1..I at time 0
        sparse_new = count_pictures(stage, sparse_files)
        sparse_old, _ = old_counts(old_model, sparse_files, threshold)
    hall = np.array([path.name.startswith("hall") for path in sparse_files])
    hall_error = np.abs(sparse_new - sparse_true)[hall]
    old_hall_error = np.abs(sparse_old - sparse_true)[hall]

    new_figures, old_figures = figures(true, counted), figures(true, old)
    interval = WorkerSettings().crowd_interval_seconds
    per_count = crowd_seconds / counts
    overall = new_figures["overall"]
    assert isinstance(overall, dict)
    bands = {name: band["mae_percent"] for name, band in new_figures["bands"].items() if band["pictures"]}  # type: ignore[union-attr]
    goals = {f"overall MAE <= {GOAL_OVERALL:g} % of the mean count": (overall["mae_percent"] or 0) <= GOAL_OVERALL,
             **{f"band {name} MAE <= {GOAL_BAND:g} %": (value or 0) <= GOAL_BAND for name, value in bands.items()},
             f"every hall frame within {GOAL_HALL} person": bool((hall_error <= GOAL_HALL).all())}
    results: dict[str, object] = {
        "data": f"{DATA}: {DEV.name}", "pictures": len(files), "machine": machine(), "threads": 1,
        "shipped": new_figures, "old": old_figures,
        "old_counter": f"people model (int8) boxes with score >= {threshold}, whole picture",
        "mae_percent_new_over_old": {
            "overall": ratio(overall["mae_percent"], old_figures["overall"]["mae_percent"]),  # type: ignore[index]
            **{name: ratio(new_figures["bands"][name]["mae_percent"],  # type: ignore[index]
                           old_figures["bands"][name]["mae_percent"]) for name in bands}},  # type: ignore[index]
        "per_picture": {path.name: [int(t), int(c), int(o)] for path, t, c, o in zip(files, true, counted, old)},
        "sparse": {"per_picture": {path.stem: [int(t), int(c), int(o)]
                                   for path, t, c, o in zip(sparse_files, sparse_true, sparse_new, sparse_old)},
                   "hall_within_one": f"{int((hall_error <= 1).sum())}/{int(hall.sum())}",
                   "hall_max_error": int(hall_error.max(initial=0)),
                   "old_hall_within_one": f"{int((old_hall_error <= 1).sum())}/{int(hall.sum())}"},
        "cost": {"seconds_per_count": round(per_count, 3), "people_model_seconds": round(people_seconds / counts, 3),
                 "density_model_seconds": round(density_seconds / counts, 3), "crowd_interval_seconds": interval,
                 "cores_per_crowd_camera": round(per_count / interval, 4),
                 "old_seconds_per_picture": round(old_seconds, 3)},
        "goals": {name: "pass" if ok else "FAIL" for name, ok in goals.items()}}
    OUT.mkdir(exist_ok=True)
    (OUT / "crowd.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print_table(results)
    print("\nGoals:")
    for name, ok in goals.items():
        print(f"  {'pass' if ok else 'FAIL'}  {name}")
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
