"""The detection stage of a worker: gate the batch, run the models on what passed, apply each
camera's rules, and give every event a JPEG snapshot with its boxes drawn (`ingest.snapshots`).

The arithmetic lives in `detectors/` (gating, YOLO decoding, rules); this module owns what
touches the outside: the ONNX Runtime sessions, the clock, the snapshot folder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from config.errors import ConfigError
from detectors.camera_rows import CameraRows, grow
from detectors.crowd import CountingRules
from detectors.detections import Detections
from detectors.events import Event
from detectors.frames import FrameBatch
from detectors.gating import GateRules, flickering_flame_share, gate
from detectors.rules import KIND_COLUMNS, RuleEngine
from detectors.suppression import SuppressionTable, with_appearance
from detectors.verify import VerifyRules, evidence, person_cover, verified
from detectors.video_quality import FROZEN, QualityReport
from detectors.yolo import Run, YoloDetector
from ingest.crowd_counting import CrowdCounter
from ingest.snapshots import with_snapshot
from models.manifest import ModelManifest

log = logging.getLogger("lookout.detection")

STEPS = ("gate", "fire_model", "people_model", "inference", "verify", "rules", "snapshots", "crowd")


@dataclass
class StageFigures:
    """What the stage did: frames seen, frames the gate let through to the models, and the
    seconds spent in each step. `inference` is the models' own run time (ONNX Runtime); the
    two model steps include it, with letterboxing, decoding and NMS."""

    frames: int = 0
    inferred: int = 0
    counted: int = 0  # frames whose crowd zones were counted (`crowd` holds their seconds)
    suppressed: int = 0  # candidates dropped as false alarms operators taught (detectors.suppression)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STEPS, 0.0))

    @contextmanager
    def timing(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] += time.perf_counter() - started

    def timed(self, run: Run) -> Run:
        """`run` with its time added to `inference`."""
        def timed_run(tensor: np.ndarray) -> np.ndarray:
            with self.timing("inference"):
                return run(tensor)
        return timed_run


def heartbeat_phase(camera_ids: np.ndarray) -> np.ndarray:
    """A fixed share of the heartbeat period per camera, spread evenly (golden-ratio steps)."""
    return (camera_ids * 0.6180339887498949) % 1.0


@dataclass
class Model:
    manifest: ModelManifest
    detector: YoloDetector
    run: Run


@dataclass
class DetectionStage:
    fire: Model
    rules: RuleEngine
    people: Model | None = None
    gate_rules: GateRules = field(default_factory=GateRules)
    verify_rules: VerifyRules = field(default_factory=VerifyRules)
    snapshot_dir: Path | None = None
    figures: StageFigures = field(default_factory=StageFigures)
    suppressions: SuppressionTable = field(default_factory=SuppressionTable)  # per camera, from the registry
    decode_floor: float = 0.2  # the models keep boxes from here, or from the lowest threshold of a rule below it
    crowd: CrowdCounter | None = None  # counts cameras with crowd zones (None: crowds are not counted)

    def __post_init__(self) -> None:
        self.cameras = CameraRows()
        self.last_inference = np.empty(0, np.float64)
        self.fit_decoding()

    def fit_decoding(self) -> None:
        """Each model keeps, per class, the boxes from the lowest threshold any camera's rules set
        for that class's kind (never above `decode_floor`): a camera whose rules ask for flame ≥ 0.1
        must see the 0.1 boxes, and rules change while the worker runs (`RuleEngine.update_rules`),
        so this is checked every batch — two lookups per class."""
        for name in ("fire", "people"):
            model = getattr(self, name)
            if model is None:
                continue
            wanted = np.array([min(self.decode_floor, self.rules.table.lowest(kind)) if kind in KIND_COLUMNS
                               else self.decode_floor for kind in model.manifest.class_kinds()], np.float32)
            if not np.array_equal(wanted, model.detector.thresholds):
                setattr(self, name, replace(model, detector=replace(model.detector, thresholds=wanted)))

    def close(self) -> None:
        """Let the crowd counter's thread go (the worker stops)."""
        if self.crowd is not None:
            self.crowd.close()

    def forget(self, camera_ids: set[int]) -> None:
        keep = self.cameras.remove(camera_ids)
        self.last_inference = self.last_inference[keep]
        if self.crowd is not None:
            self.crowd.forget(camera_ids)

    def run(self, batch: FrameBatch, quality: QualityReport, now: float | None = None) -> list[Event]:
        """Events of this batch; `quality` is the same batch's quality report (motion)."""
        if not len(batch):
            return []
        now = time.time() if now is None else now
        events = self.fire_events(batch, quality, now)
        if events and self.snapshot_dir is not None:
            with self.figures.timing("snapshots"):
                events = [self._with_snapshot(event, batch) for event in events]
        return events + self.crowd_events(batch, quality, now)[0]

    def crowd_events(self, batch: FrameBatch, quality: QualityReport,
                     now: float) -> tuple[list[Event], dict[tuple[int, str], int]]:
        """Crowd events and the people counted per (camera, zone): of the count the background
        thread finished since the last batch, and — counting in the foreground — of the cameras
        of `batch` due a count now (`CrowdCounter.due`). A frozen picture is not counted: it
        shows the crowd of when it froze. A background count whose zones changed meanwhile is
        dropped (its columns are another table's)."""
        zones = self.rules.zones
        if self.crowd is None:
            return [], {}
        try:
            done = self.crowd.finished()
        except Exception as exc:  # noqa: BLE001 - a failed count must not cost the batch its fire events
            log.error("crowd_count_failed", extra={"error": repr(exc)[:300]})
            done = None
        if done is None and len(zones.camera) and not self.crowd.busy:
            due = self.crowd.due(batch.camera_ids, zones.camera[~np.isnan(zones.area)], now,
                                 usable=~quality.faults[:, FROZEN])
            if due.any():
                chosen = FrameBatch(batch.camera_ids[due], batch.timestamps[due], batch.frames[due])
                if self.crowd.background:
                    self.crowd.submit(chosen, zones)
                else:
                    done = (*self.crowd.timed_count(chosen.frames, chosen.camera_ids, zones), chosen, zones)
        if done is None:
            return [], {}
        counts, seconds, counted, counted_zones = done
        self.figures.seconds["crowd"] += seconds
        self.figures.counted += len(counted)
        if counted_zones is not self.rules.zones:  # rules changed meanwhile: its columns are another table's
            self.crowd.recount(counted.camera_ids)
            return [], {}
        with self.figures.timing("rules"):
            events, per_zone = self.rules.crowd_events(counts, counted.camera_ids, counted.timestamps)
        if events and self.snapshot_dir is not None:
            with self.figures.timing("snapshots"):
                events = [self._with_snapshot(event, counted) for event in events]
        return events, per_zone

    def fire_events(self, batch: FrameBatch, quality: QualityReport, now: float) -> list[Event]:
        """Flame and smoke events of the frames of `batch` the gate lets through."""
        self.fit_decoding()
        with self.figures.timing("gate"):
            rows, added = self.cameras.rows(batch.camera_ids)
            self.last_inference = grow(self.last_inference, added, -np.inf)
            # a frozen picture shows nothing new; every other fault may BE the fire: a wall of
            # flames casts the picture red, a room filling with smoke blurs and flattens it, a
            # small fire at night sits in a picture that is otherwise black
            usable = ~quality.faults[:, FROZEN]
            chosen = usable & gate(quality.motion, flickering_flame_share(batch.frames, quality.motion_mask),
                                   now - self.last_inference[rows], self.gate_rules)
        self.figures.frames += len(batch)
        self.figures.inferred += int(chosen.sum())
        if not chosen.any():
            return []
        # cameras seen for the first time arrive together when a worker starts: spread their
        # heartbeats over the period (a fixed phase per camera) so that static scenes do not all
        # come back to the models in the same tick, every heartbeat, for ever
        first = np.isneginf(self.last_inference[rows[chosen]])
        phase = heartbeat_phase(batch.camera_ids[chosen]) * self.gate_rules.heartbeat_seconds
        self.last_inference[rows[chosen]] = now - np.where(first, phase, 0.0)
        subset = FrameBatch(batch.camera_ids[chosen], batch.timestamps[chosen], batch.frames[chosen])
        size = subset.frames.shape[1:3]
        local = time.localtime(now)
        minute = local.tm_hour * 60 + local.tm_min
        found, _ = self.confirmed(subset.frames, quality.motion_mask[chosen], self.rules.table.lowest("smoke"))
        if len(self.suppressions):  # what operators taught: a false alarm they marked does not come back
            with self.figures.timing("verify"):
                keep = self.suppressions.keep_detections(found, subset.frames, subset.camera_ids,
                                                         self.fire.manifest.class_kinds())
            self.figures.suppressed += int((~keep).sum())
            found = found.select(keep)
        with self.figures.timing("rules"):
            events = self.rules.fire_events(found, self.fire.manifest.class_kinds(), subset.camera_ids,
                                            subset.timestamps, size, minute)
            return with_appearance(events, subset.frames, subset.camera_ids)  # what a false-alarm mark teaches

    def confirmed(self, frames: np.ndarray, motion_mask: np.ndarray | None,
                  smoke_floor: float) -> tuple[Detections, Detections]:
        """The fire model's boxes on `frames` that pass verification, and the people found (see
        `verify`)."""
        with self.figures.timing("fire_model"):
            found = self.fire.detector.detect(frames, self.fire.run)
        return self.verify(frames, found, motion_mask, smoke_floor)

    def verify(self, frames: np.ndarray, found: Detections, motion_mask: np.ndarray | None,
               smoke_floor: float) -> tuple[Detections, Detections]:
        """The boxes of `found` (the fire model's, on `frames`) that pass `detectors.verify`,
        and the people found on the frames that needed the people model: those with a smoke
        candidate of `smoke_floor` or more that passed the other tests, which a person must not
        explain. `motion_mask` is None for stills."""
        kinds = self.fire.manifest.class_kinds()
        with self.figures.timing("verify"):
            seen = evidence(frames, found, motion_mask)
            # the people model is the dearest test: only smoke boxes that pass the others need it
            standing = verified(found, kinds, seen, self.verify_rules)
        need = np.zeros(len(frames), bool)
        smoke = (np.asarray(kinds)[found.class_id] == "smoke") & (found.confidence >= smoke_floor) & standing
        need[found.frame_index[smoke]] = True
        people = Detections.empty()
        if self.people is not None and need.any():
            with self.figures.timing("people_model"):
                people = self.people.detector.detect(frames[need], self.people.run).on_rows(np.flatnonzero(need))
        with self.figures.timing("verify"):
            persons = people.select(people.confidence >= self.rules.table.lowest("person"))
            seen = replace(seen, person_cover=person_cover(found, persons))
            return found.select(verified(found, kinds, seen, self.verify_rules)), people

    def _with_snapshot(self, event: Event, batch: FrameBatch) -> Event:
        """The event with `snapshot` (a path under snapshot_dir) in its evidence: its camera's
        frame of `batch`, drawn and written by `ingest.snapshots`."""
        assert self.snapshot_dir is not None
        frame = batch.frames[int(np.flatnonzero(batch.camera_ids == event.camera_id)[0])]
        return with_snapshot(event, frame, self.snapshot_dir)


def load_model(cache: Path, name: str, threshold: float = 0.2, threads: int = 1,
               precision: str = "int8") -> Model:
    """The verified model `name` of `cache` at `precision` (int8 or fp32) on an ONNX Runtime
    session of `threads`, its detector keeping boxes from `threshold` up. ConfigError when the
    model is unknown or not built."""
    from ingest.model_runtime import onnx_runner
    from models.build import verified_model

    manifest = model_manifest(name)
    thresholds = np.full(len(manifest.classes), threshold, np.float32)
    detector = YoloDetector(manifest.classes, manifest.input_size, thresholds)
    return Model(manifest, detector, onnx_runner(verified_model(cache, manifest, precision), threads))


CROWD_MODELS = ("crowd_people", "crowd_density")


def load_crowd_counter(cache: Path, threads: int = 1, precision: str = "int8", interval: float = 10.0,
                       rules: CountingRules | None = None, background: bool = False) -> CrowdCounter:
    """The crowd counter over the verified `crowd_people` and `crowd_density` models of `cache`
    at `precision` (int8: the density model counts within 1 % of float32 on crowd-dev, in a
    third of the time)."""
    from ingest.model_runtime import onnx_runner
    from models.build import verified_model

    rules = rules or CountingRules()
    people = load_model(cache, "crowd_people", 2.0, threads, precision)  # 2.0: no class but the person
    kinds = people.manifest.class_kinds()
    thresholds = np.where(np.asarray(kinds) == "person", rules.person_threshold, 2.0).astype(np.float32)
    density = model_manifest("crowd_density")
    return CrowdCounter(replace(people.detector, thresholds=thresholds), people.run, people.manifest,
                        onnx_runner(verified_model(cache, density, precision), threads), rules, interval, background)


def model_manifest(name: str) -> ModelManifest:
    """The manifest `name` of models/; ConfigError naming the known ones otherwise."""
    from models.manifest import manifests

    known = manifests()
    if name not in known:
        raise ConfigError(f"unknown model {name!r}; models/ has {', '.join(sorted(known))}", field="detectors")
    return known[name]


def load_stage(cache: Path, names: list[str], snapshot_dir: Path | None, rules: RuleEngine | None = None,
               thresholds: float = 0.2, threads: int = 1, precision: str = "int8",
               crowd_interval: float = 10.0, crowd_background: bool = False) -> DetectionStage | None:
    """The stage over the models `names` of `cache` (see `load_model`; None when `names` is
    empty). Decoding keeps boxes from `thresholds` up, or from a camera's rule below it
    (`DetectionStage.fit_decoding`); each camera's rules then apply their own thresholds.
    Crowds are counted when `names` holds both crowd models (`CROWD_MODELS`), each crowd
    camera once per `crowd_interval` seconds, on a thread of its own with `crowd_background`
    (a worker's tick must not wait for it)."""
    if not names:
        return None
    figures = StageFigures()
    loaded = {}
    for name in names:
        if name in CROWD_MODELS:
            continue
        model = load_model(cache, name, thresholds, threads, precision)
        loaded[name] = replace(model, run=figures.timed(model.run))
    if "fire_smoke" not in loaded:
        raise ConfigError("the detection stage needs the fire_smoke model", field="detectors")
    wanted = [name for name in CROWD_MODELS if name in names]
    if wanted and len(wanted) != len(CROWD_MODELS):
        raise ConfigError(f"crowd counting needs both {' and '.join(CROWD_MODELS)}", field="detectors")
    crowd = load_crowd_counter(cache, threads, precision, crowd_interval, background=crowd_background) if wanted else None
    return DetectionStage(loaded["fire_smoke"], rules or RuleEngine({}), loaded.get("people"), decode_floor=thresholds,
                          snapshot_dir=snapshot_dir, figures=figures, crowd=crowd)
