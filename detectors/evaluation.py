"""Scoring the fire/smoke chain on labelled images, as arrays: one row per image, one column
per class (flame, smoke). Alarm-level figures treat an image as positive when it holds fire or
smoke and as alarmed when any kept box of either kind clears its threshold; class-level
figures do the same per kind. The threshold sweep re-scores stored per-image maxima, so the
models run once per image however many operating points are tried."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.detections import Detections

CLASSES = ("flame", "smoke")


def image_maxima(found: Detections, kinds_of_class: tuple[str, ...], images: int, min_area: float = 0.0) -> np.ndarray:
    """(images, 2) the best score of each kind in each image (0 where none), boxes smaller
    than `min_area` pixels left out."""
    best = np.zeros((images, len(CLASSES)), np.float32)
    if not len(found):
        return best
    kinds = np.asarray(kinds_of_class)[found.class_id]
    column = np.searchsorted(np.asarray(CLASSES), kinds)
    keep = np.isin(kinds, CLASSES) & (found.areas >= min_area)
    np.maximum.at(best, (found.frame_index[keep], column[keep]), found.confidence[keep])
    return best


@dataclass(frozen=True)
class Scores:
    images: int
    positives: int
    negatives: int
    # None where the set gives nothing to divide by (no positives, no alarms, no negatives):
    # JSON has no NaN, and "0 of 0" is no figure
    recall: float | None
    precision: float | None
    false_alarm_rate: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {"images": self.images, "positives": self.positives, "negatives": self.negatives,
                "recall": rounded(self.recall), "precision": rounded(self.precision),
                "false_alarm_rate": rounded(self.false_alarm_rate)}


def score(truth: np.ndarray, alarmed: np.ndarray) -> Scores:
    """Scores of boolean per-image truth against boolean per-image alarms."""
    positives, negatives = int(truth.sum()), int((~truth).sum())
    hits, false = int((truth & alarmed).sum()), int((~truth & alarmed).sum())
    return Scores(len(truth), positives, negatives, hits / positives if positives else None,
                  hits / (hits + false) if hits + false else None, false / negatives if negatives else None)


def evaluate(truth: np.ndarray, maxima: np.ndarray, thresholds: tuple[float, float]) -> dict[str, object]:
    """The figures of `lookout eval fire`: alarm level and per class, at (flame, smoke) thresholds."""
    fired = maxima >= np.asarray(thresholds, np.float32)[None, :]
    result: dict[str, object] = score(truth.any(axis=1), fired.any(axis=1)).as_dict()
    result["thresholds"] = dict(zip(CLASSES, thresholds))
    result["classes"] = {kind: score(truth[:, i], fired[:, i]).as_dict() for i, kind in enumerate(CLASSES)}
    return result


def sweep(maxima_pos: np.ndarray, maxima_clean: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Every (flame, smoke) threshold pair of `grid` × `grid`: rows of (flame threshold, smoke
    threshold, alarm recall on the positives, share of clean frames that alarm)."""
    flame, smoke = np.meshgrid(grid, grid, indexing="ij")
    pairs = np.stack([flame.ravel(), smoke.ravel()], axis=1)  # (P, 2)
    hit = ((maxima_pos[None, :, :] >= pairs[:, None, :]).any(axis=2)).mean(axis=1)
    false = ((maxima_clean[None, :, :] >= pairs[:, None, :]).any(axis=2)).mean(axis=1)
    return np.column_stack([pairs, hit, false])
