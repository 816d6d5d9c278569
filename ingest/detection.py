"""The detection stage of a worker: gate the batch, run the models on what passed, apply each
camera's rules, and write a JPEG snapshot with the boxes drawn for every event.

The arithmetic lives in `detectors/` (gating, YOLO decoding, rules); this module owns what
touches the outside: the ONNX Runtime sessions, the clock, the snapshot files.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from detectors.camera_rows import CameraRows, grow
from config.errors import ConfigError
from detectors.events import Event
from detectors.frames import FrameBatch
from detectors.gating import GateRules, flickering_flame_share, gate
from detectors.rules import RuleEngine
from detectors.video_quality import QualityReport
from detectors.yolo import Run, YoloDetector
from models.manifest import ModelManifest

log = logging.getLogger("lookout.detection")
COLOURS = {"flame": (0, 64, 255), "smoke": (160, 160, 160), "person": (0, 200, 0)}  # BGR for OpenCV


@dataclass
class GateFigures:
    """How much inference the gate saved: frames seen, frames run."""

    frames: int = 0
    inferred: int = 0


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
    snapshot_dir: Path | None = None
    figures: GateFigures = field(default_factory=GateFigures)

    def __post_init__(self) -> None:
        self.cameras = CameraRows()
        self.last_inference = np.empty(0, np.float64)

    def forget(self, camera_ids: set[int]) -> None:
        keep = self.cameras.remove(camera_ids)
        self.last_inference = self.last_inference[keep]

    def run(self, batch: FrameBatch, quality: QualityReport, now: float | None = None) -> list[Event]:
        """Events of this batch; `quality` is the same batch's quality report (motion)."""
        if not len(batch):
            return []
        now = time.time() if now is None else now
        rows, added = self.cameras.rows(batch.camera_ids)
        self.last_inference = grow(self.last_inference, added, -np.inf)
        usable = ~quality.faults.any(axis=1)  # a black, frozen or blurred picture has nothing to show
        chosen = usable & gate(quality.motion, flickering_flame_share(batch.frames, quality.motion_mask),
                               now - self.last_inference[rows], self.gate_rules)
        self.figures.frames += len(batch)
        self.figures.inferred += int(chosen.sum())
        if not chosen.any():
            return []
        self.last_inference[rows[chosen]] = now
        subset = FrameBatch(batch.camera_ids[chosen], batch.timestamps[chosen], batch.frames[chosen])
        size = subset.frames.shape[1:3]
        local = time.localtime(now)
        minute = local.tm_hour * 60 + local.tm_min
        found = self.fire.detector.detect(subset.frames, self.fire.run)
        events = self.rules.fire_events(found, self.fire.manifest.class_kinds(), subset.camera_ids,
                                        subset.timestamps, size, minute)
        if self.people is not None and len(self.rules.zones.camera):
            crowd_cameras = np.isin(subset.camera_ids, self.rules.zones.camera[~np.isnan(self.rules.zones.area)])
            if crowd_cameras.any():
                people = self.people.detector.detect(subset.frames[crowd_cameras], self.people.run)
                crowd, _ = self.rules.crowd_events(people, subset.camera_ids[crowd_cameras],
                                                   subset.timestamps[crowd_cameras], size)
                events += crowd
        if events and self.snapshot_dir is not None:
            events = [self._with_snapshot(event, subset) for event in events]
        return events

    def _with_snapshot(self, event: Event, subset: FrameBatch) -> Event:
        """The event with `snapshot` (a path under snapshot_dir) in its evidence."""
        assert self.snapshot_dir is not None
        frame = subset.frames[int(np.flatnonzero(subset.camera_ids == event.camera_id)[0])]
        image = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        height, width = image.shape[:2]
        boxes = np.asarray(event.evidence.get("boxes", []), np.float32).reshape(-1, 4) * [width, height, width, height]
        colour = COLOURS.get(event.kind, (0, 255, 255))
        for x1, y1, x2, y2 in boxes.astype(int).tolist():
            cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.at))
        cv2.putText(image, f"{event.kind} {event.score:.2f} {stamp}", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    colour, 2)
        relative = Path(str(event.camera_id)) / time.strftime("%Y%m%d", time.localtime(event.at)) / f"{event.event_id}.jpg"
        target = self.snapshot_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if ok:
            target.write_bytes(data.tobytes())
        else:
            log.warning("snapshot_failed", extra={"camera_id": event.camera_id, "event_id": event.event_id})
            return event
        return Event(event.camera_id, event.kind, event.at, event.score,
                     {**event.evidence, "snapshot": str(relative)}, event.event_id)


def load_stage(cache: Path, names: list[str], snapshot_dir: Path | None, rules: RuleEngine | None = None,
               thresholds: float = 0.2) -> DetectionStage | None:
    """The stage over the verified models `names` of `cache` (None when `names` is empty).

    Decoding keeps boxes from `thresholds` up; each camera's rules then apply their own, higher
    thresholds. ConfigError when a model is not built."""
    if not names:
        return None
    from ingest.model_runtime import onnx_runner
    from models.build import verified_model
    from models.manifest import manifests

    known = manifests()
    loaded = {}
    for name in names:
        if name not in known:
            raise ConfigError(f"unknown model {name!r}; models/ has {', '.join(sorted(known))}", field="detectors")
        manifest = known[name]
        detector = YoloDetector(manifest.classes, manifest.input_size, np.full(len(manifest.classes), thresholds,
                                                                                np.float32))
        loaded[name] = Model(manifest, detector, onnx_runner(verified_model(cache, manifest)))
    if "fire_smoke" not in loaded:
        raise ConfigError("the detection stage needs the fire_smoke model", field="detectors")
    return DetectionStage(loaded["fire_smoke"], rules or RuleEngine({}), loaded.get("people"),
                          snapshot_dir=snapshot_dir)
