"""A worker with the detection stage: a camera filming a real fire scene raises one flame event
on `lookout:events` with a JPEG snapshot, a camera of clean real footage raises none, and the
gate sends static scenes to the model only at the heartbeat."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import redis

from api.services import Services
from config.redis_names import EVENTS_STREAM
from detectors.events import Event
from detectors.rules import CameraRules, RuleEngine
from ingest.detection import heartbeat_phase, load_stage
from registry.camera_spec import CameraSpec
from registry.units import create_unit
from tests.conftest import MODEL_CACHE, wait_for
from tests.detection_worker import detection_worker
from tests.scenes import ASSETS, clip_of, fire_scene


def test_fire_scene_raises_one_flame_event_with_a_snapshot_and_clean_footage_none(
    sqlite_services: Services, redis_url: str, model_files: dict[str, Path], tmp_path: Path
) -> None:
    snapshots = tmp_path / "snapshots"
    stage = load_stage(MODEL_CACHE, ["fire_smoke", "people"], snapshots,
                       RuleEngine({}, CameraRules(persistence=(2, 3), cooldown_seconds=3600)))
    assert stage is not None
    fire = clip_of(fire_scene(stage.fire.detector, stage.fire.run), tmp_path / "fire.mp4")
    with sqlite_services.sessions() as session:
        county = create_unit(session, name="县", code="330199000000", parent_id=None, scope=None)
        ids = {}
        for name, url in (("fire", fire.as_uri()), ("hall", (ASSETS / "hall.mp4").as_uri())):
            spec = CameraSpec(name=name, network="xueliang", unit_id=county.id, main_stream_url=url)
            ids[name] = sqlite_services.registry.create(session, spec, county.path, "test").id
        session.commit()
    client = redis.Redis.from_url(redis_url, decode_responses=True)

    def detections() -> list[Event]:
        return [e for e in (Event.from_fields(f) for _, f in client.xrange(EVENTS_STREAM))
                if e.kind in ("flame", "smoke", "crowd")]

    with detection_worker(sqlite_services, client, stage):
        wait_for(lambda: len(detections()) >= 1, 30)
        wait_for(lambda: stage.figures.frames >= 12, 30)  # a few more samples: cooldown must hold
    events = detections()
    assert [(e.camera_id, e.kind) for e in events] == [(ids["fire"], "flame")]
    event = events[0]
    assert event.score > 0.5 and event.evidence["count"] >= 1 and event.evidence["samples"] >= 2
    x1, y1, x2, y2 = event.evidence["boxes"][0]
    assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
    snapshot = cv2.imread(str(snapshots / event.evidence["snapshot"]))
    assert snapshot is not None and snapshot.shape == (360, 640, 3)
    assert stage.figures.inferred <= stage.figures.frames


def test_the_gate_skips_static_scenes_until_the_heartbeat(model_files: dict[str, Path]) -> None:
    from detectors.frames import FrameBatch
    from detectors.video_quality import QualityMonitor
    from tests.scenes import clean_samples

    stage = load_stage(MODEL_CACHE, ["fire_smoke"], None)
    assert stage is not None
    quality = QualityMonitor()
    still = clean_samples(1)[0]
    ran = []
    for t in range(0, 70, 2):  # one sample every 2 s of a camera whose picture never changes
        noisy = np.clip(still.astype(np.int16) + np.random.default_rng(t).integers(-2, 3, still.shape), 0, 255)
        batch = FrameBatch.stack([1], [float(t)], [noisy.astype(np.uint8)])
        before = stage.figures.inferred
        stage.run(batch, quality.observe(batch), now=1000.0 + t)
        ran.append(stage.figures.inferred > before)
    # first sight, then the 30 s heartbeat — whose first period is shortened by the camera's
    # fixed phase, so that cameras starting together do not all come back in the same tick
    first = 30 - heartbeat_phase(np.array([1]))[0] * 30
    expected = [0] + [t for t in range(2, 70, 2) if t >= first][:1]
    expected.append(next(t for t in range(expected[1], 70, 2) if t - expected[1] >= 30))
    assert [t for t, r in zip(range(0, 70, 2), ran) if r] == expected
