"""Crowd counting in a worker: which cameras are due a count, the two models' sessions, and the
count per zone (`detectors.crowd` does the arithmetic).

Counting is dear — the density model costs about 0.3 s of one core per picture (int8) — so it runs only
for cameras with a crowd zone (a zone with an area), once per `interval` seconds each, on the
frames the worker samples anyway. In a worker it runs `background`: on a thread of its own,
one batch at a time, so that the fire path's tick never waits for it (ONNX Runtime releases
the GIL while it computes); the zone rules are then applied on the tick that finds the count
finished. `lookout eval crowd` and tests count in the foreground.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from detectors.camera_rows import CameraRows, grow
from detectors.crowd import CountingRules, density_maps, fused, zone_density, zone_people
from detectors.frames import FrameBatch
from detectors.rules import ZoneTable
from detectors.yolo import Run, YoloDetector
from models.manifest import ModelManifest

COUNTING_NICENESS = 10  # how much lower the counting thread's CPU priority is than the tick's


def yield_to_the_tick() -> None:
    """Lower the calling thread's CPU priority (Linux schedules threads one by one), so that on a
    busy machine the fire path's tick gets the CPU first and counting waits: a crowd count a few
    seconds late matters less than a flame found a tick late. Elsewhere: nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), COUNTING_NICENESS)
    except (AttributeError, OSError):
        pass


@dataclass
class CrowdCounter:
    """The crowd models of one worker and when each camera was last counted."""

    people: YoloDetector
    people_run: Run
    people_manifest: ModelManifest
    density_run: Run
    rules: CountingRules = field(default_factory=CountingRules)
    interval: float = 10.0  # seconds between two counts of one camera
    background: bool = False  # count on a thread of its own (a worker); False: in the caller

    def __post_init__(self) -> None:
        self.cameras = CameraRows()
        self.last_count = np.empty(0, np.float64)
        self.person_class = self.people_manifest.class_kinds().index("person")
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[Future[tuple[np.ndarray, float]], FrameBatch, ZoneTable] | None = None

    @property
    def busy(self) -> bool:
        """A background count is running: new counts wait for the next tick."""
        return self._pending is not None and not self._pending[0].done()

    def submit(self, batch: FrameBatch, zones: ZoneTable) -> None:
        """Count `batch` (its own copy of the frames) on the background thread."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="crowd-count", initializer=yield_to_the_tick)
        self._pending = (self._pool.submit(self.timed_count, batch.frames, batch.camera_ids, zones), batch, zones)

    def finished(self) -> tuple[np.ndarray, float, FrameBatch, ZoneTable] | None:
        """The counts of the last background batch once done (and only once), the seconds they
        took, the batch and the zone table they were counted for; None while running or when
        there is none. A count that failed raises here, on the caller's thread."""
        if self._pending is None or not self._pending[0].done():
            return None
        future, batch, zones = self._pending
        self._pending = None
        counts, seconds = future.result()
        return counts, seconds, batch, zones

    def timed_count(self, frames: np.ndarray, camera_ids: np.ndarray, zones: ZoneTable) -> tuple[np.ndarray, float]:
        """`count` and the seconds it took."""
        started = time.perf_counter()
        counts = self.count(frames, camera_ids, zones)
        return counts, time.perf_counter() - started

    def close(self) -> None:
        """Let the background thread go; a count still running finishes on its own (one
        batch, a few seconds) and its result is dropped."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            self._pending = None

    def due(self, camera_ids: np.ndarray, crowd_cameras: np.ndarray, now: float,
            usable: np.ndarray | None = None) -> np.ndarray:
        """(N,) bool: the rows of `camera_ids` to count now — cameras among `crowd_cameras`,
        `usable` (not frozen), not counted for `interval` seconds, each once even if it has
        several rows, at most `rules.max_batch` of them (the rest stay due for the next call:
        a background count holds no more than one batch of work) — marked counted."""
        want = np.isin(camera_ids, crowd_cameras)
        if usable is not None:
            want &= usable
        if not want.any():
            return want
        rows = self._rows(camera_ids)
        want &= now - self.last_count[rows] >= self.interval
        first = np.zeros(len(camera_ids), bool)
        first[np.unique(camera_ids, return_index=True)[1]] = True
        want &= first
        want[np.flatnonzero(want)[self.rules.max_batch:]] = False
        self.last_count[rows[want]] = now
        return want

    def recount(self, camera_ids: np.ndarray) -> None:
        """Make `camera_ids` due again (their count was dropped)."""
        self.last_count[self._rows(camera_ids)] = -np.inf

    def _rows(self, camera_ids: np.ndarray) -> np.ndarray:
        """Row of each camera in `last_count`; cameras seen for the first time are due at once."""
        rows, added = self.cameras.rows(camera_ids)
        self.last_count = grow(self.last_count, added, -np.inf)
        return rows

    def forget(self, camera_ids: set[int]) -> None:
        keep = self.cameras.remove(camera_ids)
        self.last_count = self.last_count[keep]

    def count(self, frames: np.ndarray, camera_ids: np.ndarray, zones: ZoneTable) -> np.ndarray:
        """(N, Z) people in each zone of `zones` on `frames` (N, H, W, 3) RGB of `camera_ids`."""
        people = self.people.detect(frames, self.people_run)
        detected = zone_people(people, self.person_class, camera_ids, frames.shape[1:3], zones, self.rules)
        density = zone_density(density_maps(frames, self.density_run, self.rules), camera_ids, zones, self.rules)
        return fused(detected, density, self.rules)
