"""Video-quality diagnosis (视频质量诊断) and motion, for a whole batch at once.

On a small grayscale copy of every frame (stride 2): a black picture, a blank one (uniform,
any colour: a covered lens, a failed encoder), a frozen one (no change over several samples
while packets still arrive), blur (variance of the Laplacian, against a fixed floor and against
the camera's own recent sharpness), and a colour cast (one channel dominating: a stuck IR-cut
filter turns the picture pink). A fault must hold for `sustain` consecutive samples before it
becomes one `video_degraded` event, with its reason; the next event for that camera needs the
picture to recover first. Motion is the share of pixels that changed since the camera's
previous sample, and its mask, for the gating stage.

Thresholds were set on the real clips of ../shared/media (clean: Laplacian variance 57–861,
90th-percentile change between samples ≥ 2.0, channel ratio ≤ 1.27) against the same frames
blurred with σ = 3 (Laplacian variance ≤ 22).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.camera_rows import CameraRows, grow
from detectors.events import Event
from detectors.frames import FrameBatch

LUMA_FIXED = (77, 150, 29)  # BT.601 luma weights in 1/256ths: integer maths on uint8 is 3× faster
REASONS = ("black", "blank", "frozen", "blurred", "colour_cast")
BLACK, BLANK, FROZEN, BLURRED, CAST = range(len(REASONS))


def small_gray(frames: np.ndarray, step: int) -> np.ndarray:
    """(N, H/step, W/step) float32 luma of the batch, by striding (no per-frame loop)."""
    small = frames[:, ::step, ::step, :]
    r, g, b = LUMA_FIXED
    luma = small[..., 0].astype(np.uint16) * r + small[..., 1].astype(np.uint16) * g + small[..., 2] * np.uint16(b)
    return (luma >> 8).astype(np.float32)


@dataclass(frozen=True)
class QualityRules:
    black_luma: float = 20.0  # 95 % of the picture darker than this: black (an on-screen clock may stay)
    blank_spread: float = 6.0  # the middle 90 % of luma within this many levels: a uniform picture
    frozen_change: float = 0.5  # 90th percentile of |Δluma| below this counts as no change
    frozen_samples: int = 5  # consecutive unchanged samples before a picture is frozen
    blur_floor: float = 30.0  # Laplacian variance below this is blurred...
    blur_drop: float = 0.25  # ...and so is falling below this share of the camera's own level
    cast_ratio: float = 1.8  # brightest / darkest channel mean
    cast_min_luma: float = 40.0
    sustain: int = 3  # consecutive faulty samples before an event
    motion_delta: float = 12.0  # |Δluma| that counts a pixel as moving
    step: int = 2  # stride of the small gray copy


@dataclass(frozen=True, slots=True)
class QualityReport:
    """One batch's measurements, aligned with the batch rows."""

    faults: np.ndarray  # (N, len(REASONS)) bool: each fault seen in this sample
    luma: np.ndarray  # (N,)
    contrast: np.ndarray  # (N,)
    sharpness: np.ndarray  # (N,) Laplacian variance
    change: np.ndarray  # (N,) 90th percentile |Δluma| against the previous sample; NaN without one
    motion: np.ndarray  # (N,) share of moving pixels; 0 without a previous sample
    motion_mask: np.ndarray  # (N, h, w) bool on the small gray grid
    events: list[Event]


class QualityMonitor:
    """Per-camera state (previous sample, run lengths, sharpness level) kept in arrays by
    camera id, so one call handles every camera of a tick."""

    def __init__(self, rules: QualityRules = QualityRules()) -> None:
        self.rules = rules
        self.cameras = CameraRows()
        self.previous = np.empty((0, 0, 0), np.float32)  # each camera's previous small gray sample
        self.has_previous = np.empty(0, bool)
        self.runs = np.empty((0, len(REASONS)), np.int32)  # consecutive faulty samples per reason
        self.still = np.empty(0, np.int32)  # consecutive unchanged samples
        self.level = np.empty(0, np.float32)  # the camera's usual sharpness (slow average)
        self.reported = np.empty(0, bool)  # an event was sent and the picture has not recovered

    def forget(self, camera_ids: set[int]) -> None:
        keep = self.cameras.remove(camera_ids)
        self.runs, self.still = self.runs[keep], self.still[keep]
        self.level, self.reported = self.level[keep], self.reported[keep]
        self.previous, self.has_previous = self.previous[keep], self.has_previous[keep]

    def _rows(self, ids: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Row of each camera in the state arrays, adding rows for new cameras."""
        if self.previous.shape[1:] != shape:  # the analysis size changed: no comparable sample
            self.previous = np.zeros((len(self.cameras), *shape), np.float32)
            self.has_previous = np.zeros(len(self.cameras), bool)
        rows, added = self.cameras.rows(ids)
        self.previous, self.has_previous = grow(self.previous, added, 0.0), grow(self.has_previous, added, False)
        self.runs, self.still = grow(self.runs, added, 0), grow(self.still, added, 0)
        self.level, self.reported = grow(self.level, added, np.nan), grow(self.reported, added, False)
        return rows

    def observe(self, batch: FrameBatch) -> QualityReport:
        r = self.rules
        n = len(batch)
        gray = small_gray(batch.frames, r.step) if n else np.empty((0, 0, 0), np.float32)
        flat = gray.reshape(n, -1)
        luma, contrast = flat.mean(axis=1), flat.std(axis=1)
        # percentiles, not mean and std: the on-screen clock every camera burns in must not
        # make a black or uniform picture look alive. Taken on every other pixel: a quarter of
        # the sorting for the same answer at this scale.
        sample = gray[:, ::2, ::2].reshape(n, -1)
        low, high = np.percentile(sample, [5, 95], axis=1) if n else (np.empty(0), np.empty(0))
        lap = gray[:, 1:-1, 2:] + gray[:, 1:-1, :-2] + gray[:, 2:, 1:-1] + gray[:, :-2, 1:-1] - 4 * gray[:, 1:-1, 1:-1]
        sharpness = lap.reshape(n, -1).var(axis=1) if n else np.empty(0, np.float32)
        channels = batch.frames[:, :: 4 * r.step, :: 4 * r.step].reshape(n, -1, 3).mean(axis=1)

        ids = batch.camera_ids.astype(np.int64)
        rows = self._rows(ids, gray.shape[1:])
        had = self.has_previous[rows]
        delta = np.abs(gray - self.previous[rows])
        change = np.where(had, np.percentile(delta[:, ::2, ::2].reshape(n, -1), 90, axis=1) if n else 0.0, np.nan)
        motion_mask = (delta > r.motion_delta) & had[:, None, None]
        motion = motion_mask.reshape(n, -1).mean(axis=1) if n else np.empty(0)
        self.previous[rows], self.has_previous[rows] = gray, True

        still = np.where(had & (np.nan_to_num(change, nan=np.inf) < r.frozen_change), self.still[rows] + 1, 0)
        self.still[rows] = still
        level = self.level[rows]
        faults = np.zeros((n, len(REASONS)), bool)
        faults[:, BLACK] = high < r.black_luma
        faults[:, BLANK] = (high - low < r.blank_spread) & ~faults[:, BLACK]
        faults[:, FROZEN] = still >= r.frozen_samples
        uniform = faults[:, BLACK] | faults[:, BLANK]
        faults[:, BLURRED] = ~uniform & ((sharpness < r.blur_floor) | (sharpness < r.blur_drop * np.nan_to_num(level, nan=0)))
        cast = channels.max(axis=1) / np.maximum(channels.min(axis=1), 1.0)
        faults[:, CAST] = ~uniform & (luma >= r.cast_min_luma) & (cast >= r.cast_ratio)
        # the camera's usual sharpness follows clean samples only, slowly
        clean = ~faults.any(axis=1)
        self.level[rows] = np.where(clean, np.where(np.isnan(level), sharpness, 0.9 * level + 0.1 * sharpness), level)

        runs = np.where(faults, self.runs[rows] + 1, 0)
        self.runs[rows] = runs
        sustained = runs >= r.sustain
        reported = self.reported[rows]
        fire = sustained.any(axis=1) & ~reported
        self.reported[rows] = np.where(faults.any(axis=1), reported | fire, False)
        events = []
        for i in np.flatnonzero(fire):  # events are rare; the measurements above are batch-wide
            reason = int(np.argmax(np.where(sustained[i], runs[i], -1)))
            events.append(Event(int(ids[i]), "video_degraded", float(batch.timestamps[i]), evidence={
                "reason": REASONS[reason], "samples": int(runs[i, reason]),
                "luma": round(float(luma[i]), 1), "contrast": round(float(contrast[i]), 1),
                "sharpness": round(float(sharpness[i]), 1),
            }))
        return QualityReport(faults, luma, contrast, sharpness, change, motion, motion_mask, events)
