"""The operating-point sweep of `lookout eval video --sweep`: what every (flame threshold, smoke
threshold, persistence) would have raised on the same clips, without playing them again.

The clips are played once with a `RecordingRules` as the stage's rule engine: it is the
worker's `RuleEngine`, and it also keeps the boxes each call was given — the fire model's boxes
that passed the verifier, before thresholds, zones, persistence and cooldown. Replaying those
calls through a fresh `RuleEngine.fire_events` (the same code) with other rules raises what a
run with those rules would have raised, for two reasons: the gate picks the samples that reach
the models on motion and time alone, never on the rules, and the verifier's one rule-dependent
step (the people model, run on frames with a smoke box at the lowest smoke threshold of the rule
table or above) covers every box the replayed rules can use when the recording ran at the
sweep's lowest thresholds. Each replay step stacks the i-th call of every clip (one camera
each) into one batch call, so a grid point costs as many calls as the longest clip has model
runs. Pure arithmetic: no I/O.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np

from detectors.detections import Detections
from detectors.events import Event
from detectors.rules import CameraRules, RuleEngine


@dataclass(frozen=True, slots=True)
class Call:
    """One camera's sample in one `fire_events` call: its stamp, its verified boxes (frame_index 0)."""

    at: float
    boxes: Detections
    minute: float


class RecordingRules(RuleEngine):
    """The worker's rule engine, keeping what each camera's samples gave it (`calls`)."""

    def __init__(self, default: CameraRules) -> None:
        super().__init__({}, default)
        self.calls: dict[int, list[Call]] = {}
        self.kinds: tuple[str, ...] = ()
        self.size: tuple[int, int] = (0, 0)

    def fire_events(self, detections: Detections, kinds_of_class: tuple[str, ...], camera_ids: np.ndarray,
                    timestamps: np.ndarray, size: tuple[int, int], minute_of_day: float) -> list[Event]:
        self.kinds, self.size = kinds_of_class, size
        for row, camera in enumerate(camera_ids.tolist()):  # one per camera of the batch: one in an evaluation
            mine = detections.select(detections.frame_index == row)
            self.calls.setdefault(camera, []).append(Call(float(timestamps[row]), Detections(
                mine.xyxy, mine.confidence, mine.class_id, np.zeros(len(mine), np.int32)), minute_of_day))
        return super().fire_events(detections, kinds_of_class, camera_ids, timestamps, size, minute_of_day)


@dataclass(frozen=True, slots=True)
class Step:
    """One replayed `fire_events` call: the boxes of several cameras' samples, one row each."""

    boxes: Detections
    camera_ids: np.ndarray
    timestamps: np.ndarray
    minute: float


def steps_of(calls: dict[int, list[Call]]) -> list[Step]:
    """The recorded calls as batch steps: step i holds the i-th call of every camera that has one,
    so each camera's calls keep their order (what persistence and cooldown depend on)."""
    steps = []
    cameras = sorted(calls)
    for i in range(max((len(c) for c in calls.values()), default=0)):
        ids = [c for c in cameras if i < len(calls[c])]
        parts = [calls[c][i] for c in ids]
        counts = [len(p.boxes) for p in parts]
        boxes = Detections(
            np.concatenate([p.boxes.xyxy for p in parts]).reshape(-1, 4).astype(np.float32),
            np.concatenate([p.boxes.confidence for p in parts]).astype(np.float32),
            np.concatenate([p.boxes.class_id for p in parts]).astype(np.int32),
            np.repeat(np.arange(len(parts), dtype=np.int32), counts))
        steps.append(Step(boxes, np.array(ids, np.int64), np.array([p.at for p in parts], np.float64),
                          parts[0].minute))
    return steps


def replay(steps: list[Step], kinds: tuple[str, ...], size: tuple[int, int], rules: CameraRules) -> list[Event]:
    """Every flame and smoke event the steps raise under `rules` (each camera's default)."""
    engine = RuleEngine({}, rules)
    events: list[Event] = []
    for step in steps:
        events += engine.fire_events(step.boxes, kinds, step.camera_ids, step.timestamps, size, step.minute)
    return events


@dataclass(frozen=True)
class Grid:
    """The operating points of a sweep: every flame threshold × smoke threshold × (k, n)."""

    flame: tuple[float, ...]
    smoke: tuple[float, ...]
    persistence: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if not (self.flame and self.smoke and self.persistence):
            raise ValueError("a sweep needs at least one flame threshold, smoke threshold and persistence")
        if not all(0 < t <= 1 for t in self.flame + self.smoke):
            raise ValueError("thresholds are scores in (0, 1]")

    def points(self, base: CameraRules) -> list[CameraRules]:
        """`base` with each point's thresholds and persistence (the rest, cooldown included, as in `base`)."""
        return [replace(base, thresholds={**base.thresholds, "flame": flame, "smoke": smoke}, persistence=kn)
                for flame, smoke, kn in itertools.product(self.flame, self.smoke, self.persistence)]


def frontier(recall: np.ndarray, delay: np.ndarray, false_rate: np.ndarray) -> np.ndarray:
    """(P,) bool: the points no other point beats — at least the recall, at most the median time
    to alarm (nan: never alarmed, the worst) and at most the false events per camera-hour, and
    better in one of them. All (P, P) comparisons at once."""
    r = np.nan_to_num(np.asarray(recall, float), nan=0.0)
    d = np.nan_to_num(np.asarray(delay, float), nan=np.inf)
    f = np.nan_to_num(np.asarray(false_rate, float), nan=0.0)
    at_least = (r[:, None] >= r[None, :]) & (d[:, None] <= d[None, :]) & (f[:, None] <= f[None, :])
    better = (r[:, None] > r[None, :]) | (d[:, None] < d[None, :]) | (f[:, None] < f[None, :])
    beaten = (at_least & better).any(axis=0)  # [i, j]: i beats j
    return ~beaten
