"""`lookout eval crowd DIR`: people counted on labelled pictures through the worker's own path.

DIR holds `images/` and `counts.csv` (`file,count`; more columns are ignored). Each picture is
scaled to the analysis size as a camera frame is (`ingest.fire_eval.scaled`), streamed as one
camera whose only zone is the whole picture, and counted by `DetectionStage.crowd_events` — the
worker's own counter, rules and zone arithmetic, not a second implementation. Figures: mean
absolute error (MAE), MAE as a share of the mean true count, mean relative error, mean counted
against mean true; overall and per band of true count (1–20, 21–80, 81+).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from config.errors import InvalidInput
from detectors.frames import FrameBatch
from detectors.rules import CameraRules, RuleEngine, Zone
from detectors.video_quality import QualityMonitor
from ingest.detection import DetectionStage
from ingest.fire_eval import scaled

BANDS = (("1-20", 1, 20), ("21-80", 21, 80), ("81+", 81, None))
MAX_COUNT = 1_000_000
COUNT = re.compile(r"[0-9]{1,7}")  # ASCII digits only: int() would take "٣" and choke on "²"
MAX_TABLE_BYTES = 64 * 2**20
WHOLE = Zone("whole picture", ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)), True, area_m2=1.0)


@dataclass(frozen=True)
class CountedSet:
    files: list[Path]
    counts: np.ndarray  # (I,) people counted by hand


def load_counts(folder: Path) -> CountedSet:
    """The pictures of `folder/counts.csv` with their true counts. InvalidInput naming the line
    for a row that is not `file,count` with a picture in `images/` and a whole count >= 0."""
    table, images = folder / "counts.csv", folder / "images"
    if not table.is_file() or not images.is_dir():
        raise InvalidInput(f"{folder} needs images/ and counts.csv (file,count)", field="dir")
    if table.stat().st_size > MAX_TABLE_BYTES:
        raise InvalidInput(f"{table.name} is over {MAX_TABLE_BYTES // 2**20} MiB", field="counts.csv")
    files, counts = [], []
    line = 1
    try:
        with table.open(newline="", encoding="utf-8-sig") as handle:  # a spreadsheet's BOM is no header
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"file", "count"} <= set(reader.fieldnames):
                raise InvalidInput(f"{table.name}: the header must name the columns file and count",
                                   field="counts.csv")
            for row in reader:
                line = reader.line_num
                name, count = (row.get("file") or "").strip(), (row.get("count") or "").strip()
                picture = images / name
                if not name or Path(name).name != name or not picture.is_file():
                    raise InvalidInput(f"{table.name} line {line}: no picture {name!r} in images/", field="counts.csv")
                if not COUNT.fullmatch(count) or int(count) > MAX_COUNT:
                    raise InvalidInput(f"{table.name} line {line}: count {count[:20]!r} is not a whole number of "
                                       f"people (0 to {MAX_COUNT:,})", field="counts.csv")
                files.append(picture)
                counts.append(int(count))
    except UnicodeDecodeError:
        raise InvalidInput(f"{table.name} is not UTF-8 text: save it as UTF-8", field="counts.csv") from None
    except csv.Error as exc:
        raise InvalidInput(f"{table.name} line {line + 1}: {exc}", field="counts.csv") from None
    if not files:
        raise InvalidInput(f"{table.name} lists no picture", field="counts.csv")
    return CountedSet(files, np.array(counts, np.int64))


def eval_rules(cameras: int) -> RuleEngine:
    """Rules giving each of `cameras` (ids 1..cameras) one crowd zone over the whole picture."""
    return RuleEngine({camera: CameraRules(zones=(WHOLE,)) for camera in range(1, cameras + 1)})


def count_pictures(stage: DetectionStage, files: list[Path]) -> np.ndarray:
    """(I,) people the worker's path counts on each picture (each picture its own camera)."""
    stage.rules = eval_rules(len(files))
    stage.forget(set(range(1, len(files) + 1)))  # a stage that counted before: these cameras are new again
    quality = QualityMonitor()
    counted = np.zeros(len(files), np.int64)
    for index, path in enumerate(files):
        image = cv2.imread(str(path))
        if image is None:
            raise InvalidInput(f"{path.name} is not a picture", field="images")
        camera = index + 1
        batch = FrameBatch(np.array([camera], np.int64), np.array([0.0]), scaled(image)[None])
        _, zones = stage.crowd_events(batch, quality.observe(batch), now=0.0)
        counted[index] = zones[(camera, WHOLE.name)]
    return counted


def figures(true: np.ndarray, counted: np.ndarray) -> dict[str, object]:
    """MAE, MAE as % of the mean true count, mean relative error, mean counted and true:
    overall and per band of true count."""

    def of(mask: np.ndarray) -> dict[str, float | int | None]:
        if not mask.any():
            return {"pictures": 0, "mean_true": None, "mean_counted": None, "mae": None, "mae_percent": None,
                    "mean_relative_error": None}
        t, c = true[mask].astype(np.float64), counted[mask].astype(np.float64)
        error = np.abs(c - t)
        return {"pictures": int(mask.sum()), "mean_true": round(float(t.mean()), 2),
                "mean_counted": round(float(c.mean()), 2), "mae": round(float(error.mean()), 2),
                "mae_percent": round(100 * float(error.mean() / t.mean()), 1) if t.mean() else None,
                "mean_relative_error": round(float(np.mean(error / np.maximum(t, 1))), 3)}

    bands = {name: of((true >= low) & ((true <= high) if high is not None else True)) for name, low, high in BANDS}
    return {"overall": of(np.ones(len(true), bool)), "bands": bands}
