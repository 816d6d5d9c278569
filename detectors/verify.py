"""A second look at the fire model's candidate boxes before the rules count them.

The detector alone cannot be trusted at thresholds low enough to catch small fires: on the
clean real footage of ../shared/media it reads grey asphalt under a whole-frame box and people
in grey clothes as "smoke" (up to 0.9), a false positive present in every frame, which no
persistence rule can remove. Each candidate is checked against what it claims to be:

- a flame box must hold flame-coloured pixels (bright, red over green over blue) — the model
  also answers on orange lights and warm skin at low scores, which are seldom that colour — and
  some of them must pass the gate's strict fire-pixel rule (a flame's core is bright and
  saturated): red and orange clothes, brick and autumn leaves pass the loose rule over a tenth of
  a box, yet almost never hold a pixel that bright (video-dev's aerial crowd in red and orange:
  every false flame box had none; the fire-smoke photographs' flame boxes: 98 % hold ≥ 1 %);
- a smoke box must show contrast: a plume is lighter or darker than what lies behind it, so a
  box whose luminance is nearly flat (asphalt, a wall, an overcast sky) holds no plume;
- a smoke box mostly covered by a person (the people model's boxes) is that person;
- in a stream, a smoke box in which nothing moved since the camera's previous sample is
  background: smoke drifts and grows, walls do not. Stills (and a camera's first sample) have
  no previous sample, and skip this test.

Every test is array work over all boxes of the batch at once: per-pixel maps of the frames
that hold candidates are summed over each box with integral images (four lookups per box).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.detections import Detections
from detectors.gating import flame_coloured
from detectors.video_quality import small_gray

FLAME_MIN_RED, FLAME_RED_OVER_BLUE = 150, 60  # looser than the gate's: the model already points at the box
STEP = 2  # the maps are computed on every second pixel: boxes smaller than that are noise anyway


@dataclass(frozen=True)
class VerifyRules:
    flame_colour_share: float = 0.05  # share of a flame box that must be flame-coloured
    flame_core_share: float = 0.01  # share of it that must pass the strict rule (detectors.gating)
    smoke_min_contrast: float = 18.0  # standard deviation of luminance (0–255) a smoke box must show
    person_cover: float = 0.5  # share of a smoke box a person box may cover before it is that person
    smoke_min_motion: float = 0.01  # share of a smoke box that must have changed since the previous sample


def box_sums(integral: np.ndarray, boxes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(K, C) sums of each box over an integral image (N, h+1, w+1, C); `boxes` (K, 4) are
    integer cells [x1, y1, x2, y2), `rows` the image of each box."""
    x1, y1, x2, y2 = boxes.T
    return integral[rows, y2, x2] - integral[rows, y1, x2] - integral[rows, y2, x1] + integral[rows, y1, x1]


def integral_image(maps: np.ndarray) -> np.ndarray:
    """(N, h, w, C) → (N, h+1, w+1, C) float64 cumulative sums with a zero first row and column."""
    n, h, w, c = maps.shape
    out = np.zeros((n, h + 1, w + 1, c), np.float64)
    np.cumsum(np.cumsum(maps, axis=1, dtype=np.float64), axis=2, out=out[:, 1:, 1:])
    return out


def cells(xyxy: np.ndarray, grid: tuple[int, int], step: int) -> np.ndarray:
    """Boxes in frame pixels → integer cells of a grid of `step`-pixel cells, at least one cell."""
    h, w = grid
    x1 = np.clip(np.floor(xyxy[:, 0] / step), 0, w - 1)
    y1 = np.clip(np.floor(xyxy[:, 1] / step), 0, h - 1)
    x2 = np.clip(np.maximum(np.ceil(xyxy[:, 2] / step), x1 + 1), 1, w)
    y2 = np.clip(np.maximum(np.ceil(xyxy[:, 3] / step), y1 + 1), 1, h)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.int64)


@dataclass(frozen=True, slots=True)
class BoxEvidence:
    """What the frames show inside each candidate box, aligned with the Detections."""

    flame_share: np.ndarray  # (K,) share of flame-coloured pixels
    flame_core: np.ndarray  # (K,) share of pixels passing the strict (gate's) fire-pixel rule
    contrast: np.ndarray  # (K,) standard deviation of luminance
    person_cover: np.ndarray  # (K,) largest share of the box covered by one person box
    motion: np.ndarray  # (K,) share of the box that changed since the previous sample; nan: unknown


def person_cover(boxes: Detections, people: Detections) -> np.ndarray:
    """(K,) for each box, the largest share of its area that one person box of the same frame
    covers."""
    if not len(boxes) or not len(people):
        return np.zeros(len(boxes))
    a, b = boxes.xyxy[:, None, :], people.xyxy[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    share = width * height / np.maximum(boxes.areas, 1.0)[:, None]
    share[boxes.frame_index[:, None] != people.frame_index[None, :]] = 0.0
    return share.max(axis=1)


def evidence(frames: np.ndarray, boxes: Detections, motion_mask: np.ndarray | None = None) -> BoxEvidence:
    """The evidence of every box of `boxes` in `frames` (N, H, W, 3) RGB. `motion_mask` (N, h, w)
    is the quality stage's mask of pixels changed since each camera's previous sample (None for
    stills). `person_cover` is left at zero: the people model runs only for the boxes that pass
    the other tests, and its cover is filled in after (`person_cover`)."""
    k = len(boxes)
    if not k:
        empty = np.empty(0)
        return BoxEvidence(empty, empty, empty, empty, empty)
    used, rows = np.unique(boxes.frame_index, return_inverse=True)  # only frames with candidates
    picked = frames[used]
    luma = small_gray(picked, STEP)
    flame = flame_coloured(picked, STEP, FLAME_MIN_RED, FLAME_RED_OVER_BLUE).astype(np.float32)
    core = flame_coloured(picked, STEP).astype(np.float32)
    maps = np.stack([flame, luma, luma * luma, core], axis=-1)
    grid = maps.shape[1:3]
    at = cells(boxes.xyxy, grid, STEP)
    sums = box_sums(integral_image(maps), at, rows)
    count = ((at[:, 2] - at[:, 0]) * (at[:, 3] - at[:, 1])).astype(np.float64)
    mean = sums[:, 1] / count
    contrast = np.sqrt(np.clip(sums[:, 2] / count - mean * mean, 0, None))
    motion = np.full(k, np.nan)
    if motion_mask is not None and motion_mask.size:
        mask = motion_mask[used]
        mask_step = max(1, frames.shape[1] // mask.shape[1])
        mask_cells = cells(boxes.xyxy, mask.shape[1:3], mask_step)
        moved = box_sums(integral_image(mask[..., None].astype(np.float32)), mask_cells, rows)[:, 0]
        motion = moved / ((mask_cells[:, 2] - mask_cells[:, 0]) * (mask_cells[:, 3] - mask_cells[:, 1]))
    return BoxEvidence(sums[:, 0] / count, sums[:, 3] / count, contrast, np.zeros(k), motion)


def verified(boxes: Detections, kinds_of_class: tuple[str, ...], seen: BoxEvidence, rules: VerifyRules) -> np.ndarray:
    """(K,) bool: the boxes that pass the test of their kind (other kinds pass untouched)."""
    kinds = np.asarray(kinds_of_class)[boxes.class_id] if len(boxes) else np.empty(0, str)
    flame_ok = (seen.flame_share >= rules.flame_colour_share) & (seen.flame_core >= rules.flame_core_share)
    moving = np.isnan(seen.motion) | (seen.motion >= rules.smoke_min_motion)
    smoke_ok = (seen.contrast >= rules.smoke_min_contrast) & (seen.person_cover < rules.person_cover) & moving
    return np.where(kinds == "flame", flame_ok, np.where(kinds == "smoke", smoke_ok, True))
