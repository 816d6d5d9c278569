"""What operators taught a camera: the false alarms it must not raise again.

An alert marked `false_alarm` leaves, for every flame or smoke box of its events, a
suppression of that camera: the kind, the box (normalised frame coordinates) and the box's
*appearance* — a short vector describing what the box showed (`describe`). From then on a
candidate box of that camera is dropped, after verification and before the rules count it,
when it is the same false alarm again (`SuppressionTable.keep`):

- the same camera and the same kind (a smoke suppression never touches a flame candidate);
- the same place: IoU >= `IOU_MIN` with the taught box;
- the same look: appearance distance <= `DISTANCE_MAX`.

A real fire where a false alarm was taught changes the look of the box (flames add bright warm
pixels, smoke greys the colours and flattens the contrast), so it still alarms; a small fire
inside a large taught box gets a box of its own, which fails the place test.

The appearance (`describe`) is a 2 × 2 layout of the box: per cell the mean red, green and
blue (0..1), the standard deviation of luminance (contrast, /128) and the share of
flame-coloured pixels — 20 numbers. Everything is array work over every box at once: per-pixel
maps of the frames holding boxes are summed over each box's cells with integral images; a box
is compared only with the suppressions of its own camera (ragged pairs, never a boxes × every
suppression table).

How the constants were chosen (measured on ../shared/datasets/video-dev, frames every 0.5 s at
640 × 360, the shipped model's smoke >= 0.3 / flame >= 0.2 candidates): the candidates of the
first half of each clean clip taught as one false alarm (every candidate an event), then the
second half played again; and, in those second-half boxes, real flames and smoke of
../shared/datasets/fire-smoke pasted in (75 each), as a real fire at the same place would be.
Finer layouts (4 × 4) follow the people and cars moving inside a box and stop almost nothing
that recurs; the whole box alone (1 × 1) holds the moving face of n01 only at distances where it
also stops up to a third of the pasted smoke.

    2 × 2, IoU >= 0.4, distance <= 0.07    recurring false candidates stopped
      n12 highway in haze (smoke)          8 of 9   (IoU with the taught boxes 0.54–0.96)
      n14 mall corridor (smoke)            3 of 3   (IoU 0.77–0.82)
      n01 face before a grey wall          0 of 11  (the face moves: IoU 0.28–0.57)
      n02 handheld camera, n07 crowd in    0 of 7, 0 of 38 (no fixed place to teach)
        orange (flame)
    a real fire at the same place          stopped
      flames over 40 % / 70 % of the box   0 of 75 / 0 of 75
      smoke (alpha 0.6) over 60 % / 100 %  7 of 75 / 1 of 75
      light haze (alpha 0.3–0.6), whole    1 of 75

so a real fire there still passes k-of-n persistence. A distance of 0.10 stops one recurring
candidate more (n12 9 of 9, n02 1 of 7) and 10 / 5 / 5 of the pasted smoke; 0.05 stops only 5
of n12's 9. On tests/assets the false smoke of the clean parking lot (`parking-lot.mp4`) stays
within 0.031 of itself over a panned clip, while the real smoke pictures there, whose boxes
cover the same place (IoU 0.73–0.94), are 0.108–0.144 away from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from detectors.camera_rows import lookup
from detectors.detections import Detections
from detectors.events import Event
from detectors.gating import flame_coloured
from detectors.rules import FIRE_KINDS
from detectors.verify import FLAME_MIN_RED, FLAME_RED_OVER_BLUE, integral_image

GRID = 2  # cells per side of the layout
STEP = 2  # the maps are taken on every second pixel: the cells are far coarser than that
CHANNELS = 5  # per cell: mean R, G, B; luminance std; flame-coloured share
DESCRIPTOR_SIZE = GRID * GRID * CHANNELS
#: the place test: boxes of one false alarm on a fixed camera overlap their taught box by IoU
#: 0.54–0.96 (n12, n14 above); a box that moved or grew by more is another claim
IOU_MIN = 0.4
#: the look test: root-mean-square difference of two descriptors (see above)
DISTANCE_MAX = 0.07
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _maps(frames: np.ndarray) -> np.ndarray:
    """(M, H, W, 6) float64 per-pixel maps: R, G, B (0..1), luminance, luminance², flame (the
    verifier's flame-colour rule)."""
    rgb = frames.astype(np.float32)
    luma = rgb @ LUMA
    flame = flame_coloured(frames, 1, FLAME_MIN_RED, FLAME_RED_OVER_BLUE)
    return np.concatenate([rgb / 255.0, luma[..., None], (luma * luma)[..., None], flame[..., None]],
                          axis=-1, dtype=np.float64)


def _edges(low: np.ndarray, high: np.ndarray, size: int) -> np.ndarray:
    """(K, GRID + 1) pixel edges of the cells along one axis; every cell at least one pixel wide
    (a box narrower than the grid is widened inside the picture)."""
    start = np.clip(np.floor(low * size), 0, size - GRID).astype(np.int64)
    stop = np.clip(np.ceil(high * size).astype(np.int64), start + GRID, size)
    return start[:, None] + ((stop - start)[:, None] * np.arange(GRID + 1)) // GRID


def describe(frames: np.ndarray, frame_index: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(K, DESCRIPTOR_SIZE) float32: the appearance of each box (K, 4: x1, y1, x2, y2 in 0..1)
    on its frame `frames[frame_index]` ((N, H, W, 3) uint8 RGB)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(boxes):
        return np.empty((0, DESCRIPTOR_SIZE), np.float32)
    used, rows = np.unique(np.asarray(frame_index, np.int64), return_inverse=True)
    small = frames[used][:, ::STEP, ::STEP]
    height, width = small.shape[1:3]
    integral = integral_image(_maps(small))
    xs = _edges(boxes[:, 0], boxes[:, 2], width)
    ys = _edges(boxes[:, 1], boxes[:, 3], height)
    corners = integral[rows[:, None, None], ys[:, :, None], xs[:, None, :]]  # (K, G+1, G+1, 6)
    sums = corners[:, 1:, 1:] - corners[:, :-1, 1:] - corners[:, 1:, :-1] + corners[:, :-1, :-1]
    area = (np.diff(ys, axis=1)[:, :, None] * np.diff(xs, axis=1)[:, None, :])[..., None]
    mean = sums / area
    std = np.sqrt(np.clip(mean[..., 4] - mean[..., 3] ** 2, 0, None)) / 128.0
    cells = np.concatenate([mean[..., :3], std[..., None], mean[..., 5:6]], axis=-1)  # (K, G, G, 5)
    return cells.reshape(len(boxes), DESCRIPTOR_SIZE).astype(np.float32)


def with_appearance(events: list[Event], frames: np.ndarray, camera_ids: np.ndarray) -> list[Event]:
    """The events, flame and smoke ones with `appearance` in their evidence: per box of their
    `boxes`, its descriptor (rounded to 4 places: it travels in the event) on the camera's frame
    of the batch (`frames`, one per `camera_ids`). What an operator's false-alarm mark teaches
    is read from there (`registry.suppressions`). Events are rare: this costs nothing per frame."""
    fire = [i for i, e in enumerate(events) if e.kind in FIRE_KINDS and e.evidence.get("boxes")]
    if not fire:
        return events
    counts = [len(events[i].evidence["boxes"]) for i in fire]
    rows = np.repeat(lookup(np.asarray(camera_ids, np.int64), np.array([events[i].camera_id for i in fire])), counts)
    boxes = np.array([b for i in fire for b in events[i].evidence["boxes"]], np.float64)
    looks = np.round(describe(frames, rows, boxes), 4).tolist()
    out = list(events)
    for i, (start, count) in zip(fire, zip(np.cumsum(counts) - counts, counts)):
        out[i] = replace(events[i], evidence={**events[i].evidence, "appearance": looks[start:start + count]})
    return out


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Root-mean-square difference of descriptors, broadcast over leading axes."""
    return np.sqrt(np.mean((a - b) ** 2, axis=-1))


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes a and b (…, 4), broadcast over leading axes."""
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def kind_codes(kinds: np.ndarray) -> np.ndarray:
    """Index of each kind in FIRE_KINDS; -1 for any other kind (never suppressed)."""
    kinds = np.asarray(kinds)
    codes = np.full(len(kinds), -1, np.int64)
    for code, kind in enumerate(FIRE_KINDS):
        codes[kinds == kind] = code
    return codes


@dataclass(frozen=True)
class Suppression:
    """One taught false alarm of a camera, as the registry stores it."""

    id: int
    camera_id: int
    kind: str
    box: tuple[float, float, float, float]
    appearance: tuple[float, ...]


def same_alarm(boxes: np.ndarray, codes: np.ndarray, looks: np.ndarray, taught_boxes: np.ndarray,
               taught_codes: np.ndarray, taught_looks: np.ndarray) -> np.ndarray:
    """(K, S) bool: box k is the false alarm taught as s (same kind, same place, same look).
    For the few boxes and suppressions of one camera: the table pairs cameras itself."""
    return ((codes[:, None] == taught_codes[None, :]) & (codes[:, None] >= 0)
            & (iou(boxes[:, None, :], taught_boxes[None, :, :]) >= IOU_MIN)
            & (distance(looks[:, None, :], taught_looks[None, :, :]) <= DISTANCE_MAX))


def novel(boxes: np.ndarray, codes: np.ndarray, looks: np.ndarray, taught_boxes: np.ndarray,
          taught_codes: np.ndarray, taught_looks: np.ndarray) -> np.ndarray:
    """(K,) bool: which samples of one camera teach something new, i.e. match neither a
    suppression it already has nor an earlier sample kept here — so that an alert of a hundred
    events of the same false alarm leaves a handful of rows, not a hundred."""
    keep = np.zeros(len(boxes), bool)
    known = ~same_alarm(boxes, codes, looks, taught_boxes, taught_codes, taught_looks).any(axis=1)
    among = same_alarm(boxes, codes, looks, boxes, codes, looks)  # (K, K)
    for k in np.flatnonzero(known):  # greedy, in order: a sample is new unless one kept covers it
        keep[k] = not (among[k] & keep).any()
    return keep


@dataclass
class SuppressionTable:
    """Every suppression of the cameras a worker holds, as arrays sorted by camera, and how
    many candidates each one stopped since it was last asked (`take_hits`)."""

    ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    cameras: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    codes: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    boxes: np.ndarray = field(default_factory=lambda: np.empty((0, 4), np.float32))
    looks: np.ndarray = field(default_factory=lambda: np.empty((0, DESCRIPTOR_SIZE), np.float32))
    hits: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    unsent: dict[int, int] = field(default_factory=dict)  # hits of rows replaced before they were taken

    def __len__(self) -> int:
        return len(self.ids)

    def replace(self, changes: dict[int, list[Suppression]]) -> None:
        """Give each camera of `changes` exactly these suppressions (an empty list: none).
        Hits not yet taken are kept for `take_hits`; rules change seldom, so the arrays are
        simply rebuilt."""
        gone = np.isin(self.cameras, np.fromiter(changes, np.int64, len(changes)))
        for sid, count in zip(self.ids[gone & (self.hits > 0)].tolist(), self.hits[gone & (self.hits > 0)].tolist()):
            self.unsent[sid] = self.unsent.get(sid, 0) + count
        rows = [s for items in changes.values() for s in items]
        ids = np.concatenate([self.ids[~gone], np.array([s.id for s in rows], np.int64)])
        cameras = np.concatenate([self.cameras[~gone], np.array([s.camera_id for s in rows], np.int64)])
        codes = np.concatenate([self.codes[~gone], kind_codes(np.array([s.kind for s in rows], dtype=object))])
        boxes = np.concatenate([self.boxes[~gone], np.array([s.box for s in rows], np.float32).reshape(-1, 4)])
        looks = np.concatenate([self.looks[~gone],
                                np.array([s.appearance for s in rows], np.float32).reshape(-1, DESCRIPTOR_SIZE)])
        hits = np.concatenate([self.hits[~gone], np.zeros(len(rows), np.int64)])
        order = np.argsort(cameras, kind="stable")
        self.ids, self.cameras, self.codes = ids[order], cameras[order], codes[order]
        self.boxes, self.looks, self.hits = boxes[order], looks[order], hits[order]

    def take_hits(self) -> dict[int, int]:
        """Candidates stopped per suppression id since the last call."""
        taken = dict(self.unsent)
        for sid, count in zip(self.ids[self.hits > 0].tolist(), self.hits[self.hits > 0].tolist()):
            taken[sid] = taken.get(sid, 0) + count
        self.hits[:] = 0
        self.unsent = {}
        return taken

    def keep_detections(self, found: Detections, frames: np.ndarray, camera_ids: np.ndarray,
                        kinds_of_class: tuple[str, ...]) -> np.ndarray:
        """`keep` for a model's boxes (pixels of `frames`, one frame per `camera_ids`)."""
        height, width = frames.shape[1:3]
        scale = np.array([width, height, width, height], np.float32)
        return self.keep(frames, found.frame_index, np.asarray(camera_ids)[found.frame_index],
                         np.asarray(kinds_of_class)[found.class_id], found.xyxy / scale)

    def keep(self, frames: np.ndarray, frame_index: np.ndarray, camera_ids: np.ndarray, kinds: np.ndarray,
             boxes: np.ndarray) -> np.ndarray:
        """(K,) bool: the candidate boxes (K, 4, normalised; on `frames[frame_index]`, of the
        cameras `camera_ids`, K each) that are not a taught false alarm; counts the others'
        hits. Appearances are computed only for the boxes that match a suppression's place."""
        k = len(boxes)
        keep = np.ones(k, bool)
        if not k or not len(self.ids):
            return keep
        cameras = np.asarray(camera_ids, np.int64)
        start = np.searchsorted(self.cameras, cameras, "left")
        count = np.searchsorted(self.cameras, cameras, "right") - start
        if not count.any():
            return keep
        # ragged pairs (box, suppression of its own camera)
        box = np.repeat(np.arange(k), count)
        offset = np.arange(len(box)) - np.repeat(np.cumsum(count) - count, count)
        row = np.repeat(start, count) + offset
        codes = kind_codes(kinds)
        boxes = np.asarray(boxes, np.float32)
        place = (self.codes[row] == codes[box]) & (iou(boxes[box], self.boxes[row]) >= IOU_MIN)
        if not place.any():
            return keep
        box, row = box[place], row[place]
        asked, at = np.unique(box, return_inverse=True)
        looks = describe(frames, np.asarray(frame_index)[asked], boxes[asked])
        close = distance(looks[at], self.looks[row]) <= DISTANCE_MAX
        if not close.any():
            return keep
        box, row = box[close], row[close]
        keep[box] = False
        first = np.unique(box, return_index=True)[1]  # one hit per stopped box, to its first match
        np.add.at(self.hits, row[first], 1)
        return keep
