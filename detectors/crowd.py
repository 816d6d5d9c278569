"""Counting people in crowd zones, from five people to a thousand.

Two models see a crowd differently. A person detector (`crowd_people`, COCO YOLO11n) finds
people who are few and large, and each box is certainly a person; it misses most of a crowd,
where people are small and hidden behind each other (on crowd-dev's medium pictures it finds a
third). A density model (`crowd_density`, CSRNet) spreads one unit of mass over each head, so a
zone's count is the mass inside its polygon, however dense; but it also leaves a thin haze of
mass over walls, floors and foliage, which outweighs the people when they are few. So, per zone:

- the density map loses cells under `density_floor` (the haze) and is scaled by
  `density_gain` (what is left of this checkpoint's mass is about 1.2 per head on crowd-dev);
- where both estimates say fewer than `detector_below` people, the detector's count is the
  count (its boxes are people; the haze is not);
- above it, the larger of the two: the detector's count is a floor a density map can only
  undercount in a zone the crowd barely enters, and the density map sees the people the
  detector cannot.

A person stands where the bottom centre of their box is (their feet); a head is where the
density mass is. Both are counted over the zone's polygon, normalised to the picture.

Pure arithmetic over whole batches: the models are `run(tensor) -> output` callables handed in
by the worker (`ingest.detection`), as for `detectors.yolo`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.detections import Detections
from detectors.rules import ZoneTable
from detectors.yolo import Run, resize_batch

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # CSRNet's VGG-16 was trained on these
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
DENSITY_STRIDE = 8  # one density cell per 8×8 input pixels


@dataclass(frozen=True)
class CountingRules:
    """How the two models' counts become one, chosen on crowd-dev (bench/crowd.py shows the
    figures per band, and bench/RESULTS.md the choice)."""

    person_threshold: float = 0.2  # a detector box at this score or more is a person
    density_floor: float = 0.02  # people per density cell below which a cell is haze
    density_gain: float = 0.85  # people per unit of the checkpoint's density mass
    detector_below: float = 10.0  # estimates under this many people take the detector's count
    density_side: int = 480  # longest side of the density model's input, in pixels (384 and 640: no better)
    max_batch: int = 8  # frames per density run: bounds the input tensor's memory

    def __post_init__(self) -> None:
        if not 0 < self.person_threshold <= 1:
            raise ValueError("person_threshold is a score in (0, 1]")
        if self.density_floor < 0 or self.density_gain <= 0 or self.detector_below < 0:
            raise ValueError("density_floor and detector_below must be >= 0 and density_gain > 0")
        if not DENSITY_STRIDE * 4 <= self.density_side <= 4096:
            raise ValueError("density_side must be 32..4096 pixels")


def density_input(frames: np.ndarray, side: int) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB → (N, 3, h, w) float32 normalised as CSRNet was trained: the
    longest side scaled to `side`, both sides rounded to whole density cells."""
    height, width = frames.shape[1:3]
    scale = side / max(height, width)
    size = tuple(max(DENSITY_STRIDE, round(s * scale / DENSITY_STRIDE) * DENSITY_STRIDE) for s in (height, width))
    resized = resize_batch(frames, size).astype(np.float32) / 255.0
    return ((resized - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2).copy()


def density_maps(frames: np.ndarray, run: Run, rules: CountingRules) -> np.ndarray:
    """(N, h, w) people per cell for `frames` (N, H, W, 3) RGB, in batches of `max_batch`."""
    parts = [run(density_input(frames[start:start + rules.max_batch], rules.density_side))[:, 0]
             for start in range(0, len(frames), rules.max_batch)]
    if not parts:
        return np.zeros((0, 1, 1), np.float32)
    return np.concatenate(parts).astype(np.float32)


def cell_centres(shape: tuple[int, int]) -> np.ndarray:
    """(h·w, 2) normalised (x, y) of the centre of every cell of an (h, w) map, row by row."""
    height, width = shape
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x.ravel() + 0.5) / width, (y.ravel() + 0.5) / height], axis=1)


def zone_density(maps: np.ndarray, camera_ids: np.ndarray, zones: ZoneTable, rules: CountingRules) -> np.ndarray:
    """(N, Z) people in each zone by the density maps (N, h, w) of the cameras `camera_ids`:
    the mass of the cells whose centre lies in the zone, haze removed and scaled — one
    (cells × zones) cover table and one matrix product for the whole batch. Zones of other
    cameras get 0."""
    n, z = len(maps), len(zones.camera)
    if not n or not z:
        return np.zeros((n, z), np.float64)
    cover = zones.covers(cell_centres(maps.shape[1:3])).astype(np.float32)  # (cells, Z)
    kept = np.where((maps >= rules.density_floor) & (maps > 0), maps, 0.0).reshape(n, -1)
    mass = (kept @ cover).astype(np.float64) * rules.density_gain
    return np.where(zones.camera[None, :] == np.asarray(camera_ids)[:, None], mass, 0.0)


def zone_people(people: Detections, person_class: int, camera_ids: np.ndarray, size: tuple[int, int],
                zones: ZoneTable, rules: CountingRules) -> np.ndarray:
    """(N, Z) people in each zone by the detector's boxes (their `frame_index` the row of
    `camera_ids`): boxes of the person class at `person_threshold` or more, placed at their feet."""
    n, z = len(camera_ids), len(zones.camera)
    counts = np.zeros((n, z), np.float64)
    keep = (people.class_id == person_class) & (people.confidence >= rules.person_threshold)
    if not keep.any() or not z:
        return counts
    height, width = size
    boxes = people.xyxy[keep]
    feet = np.stack([(boxes[:, 0] + boxes[:, 2]) / (2 * width), boxes[:, 3] / height], axis=1)
    rows = people.frame_index[keep]
    inside = zones.contains(feet, np.asarray(camera_ids)[rows])  # (K, Z)
    np.add.at(counts, rows, inside.astype(np.float64))
    return counts


def fused(detected: np.ndarray, density: np.ndarray, rules: CountingRules) -> np.ndarray:
    """The count of each (frame, zone): the detector's where both say fewer than
    `detector_below`, else the larger of the two (see the module's docstring)."""
    larger = np.maximum(detected, density)
    return np.where(larger < rules.detector_below, detected, larger)
