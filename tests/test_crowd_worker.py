"""Crowds through a real worker (acceptance of issue 17): real pictures of people streamed as
cameras with crowd zones — a crowd growing past the zone's pre-alarm and alarm densities
raises `pre_alarm` and then `alarm`, a sparse scene raises nothing, and a count growing fast in
a large zone raises `rising` long before its density matters.

The crowds are made of real photographs: ultralytics' `bus.jpg` (4 people) tiled 2×2 and 3×3
into one frame (16 and 36 people), after `zidane.jpg` (2 people)."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import redis

from api.services import Services
from config.redis_names import EVENTS_STREAM
from detectors.events import Event
from ingest.detection import load_stage
from registry.camera_spec import CameraSpec
from registry.rules_spec import CrowdLevels, RulesSpec, ZoneSpec
from registry.units import create_unit
from tests.conftest import MODEL_CACHE, wait_for
from tests.detection_worker import detection_worker

SIZE = (640, 360)
FPS = 5


def picture(name: str, tiles: int = 1) -> np.ndarray:
    """ultralytics' sample `name` (RGB), `tiles` × `tiles` times in one 640×360 frame."""
    found = next((MODEL_CACHE / "export-env").glob(f"lib/python*/site-packages/ultralytics/assets/{name}"))
    image = cv2.cvtColor(cv2.imread(str(found)), cv2.COLOR_BGR2RGB)
    tile = cv2.resize(image, (SIZE[0] // tiles, SIZE[1] // tiles), interpolation=cv2.INTER_AREA)
    return cv2.resize(np.tile(tile, (tiles, tiles, 1)), SIZE)


def clip(path: Path, scenes: list[tuple[np.ndarray, float]]) -> Path:
    """An H.264 MP4 showing each (picture, seconds) in turn, with a slight pan, a keyframe every second."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"x264-params": f"keyint={FPS}:min-keyint={FPS}:bframes=0"})
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        for image, seconds in scenes:
            for i in range(int(seconds * FPS)):
                frame = av.VideoFrame.from_ndarray(np.roll(image, i % 3, axis=1), format="rgb24")
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def crowd_rules(area_m2: float, levels: tuple[float, float], rise: float | None) -> str:
    return RulesSpec(zones=[ZoneSpec(name="square", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)], area_m2=area_m2)],
                     crowd_levels=CrowdLevels(pre_alarm=levels[0], alarm=levels[1]), crowd_min_seconds=0,
                     crowd_rise_per_minute=rise, crowd_rise_seconds=20).model_dump_json()


def test_crowds_raise_pre_alarm_then_alarm_a_sparse_scene_nothing_and_fast_growth_rising(
    sqlite_services: Services, redis_url: str, model_files: dict[str, Path], tmp_path: Path
) -> None:
    stage = load_stage(MODEL_CACHE, ["fire_smoke", "crowd_people", "crowd_density"], tmp_path / "snapshots",
                       crowd_interval=2.0, crowd_background=True)  # as a worker counts: beside the tick
    assert stage is not None and stage.crowd is not None
    sparse = picture("zidane.jpg")
    growing = clip(tmp_path / "growing.mp4", [(sparse, 8), (picture("bus.jpg", 2), 12), (picture("bus.jpg", 3), 14)])
    calm = clip(tmp_path / "calm.mp4", [(sparse, 34)])
    cameras = {  # name: (clip, rules)
        # 2 people on 8 m² = 0.25/m², 16 = 2/m² (pre-alarm from 1), 36 = 4.5/m² (alarm from 3)
        "square": (growing, crowd_rules(8.0, (1.0, 3.0), None)),
        "hall": (calm, crowd_rules(8.0, (1.0, 3.0), 60.0)),
        # the same crowd on 100 m² stays under 0.4/m², but grows by 14 people, then 20, within 20 s
        "gate": (growing, crowd_rules(100.0, (2.0, 4.0), 60.0)),
    }
    with sqlite_services.sessions() as session:
        county = create_unit(session, name="县", code="330199000000", parent_id=None, scope=None)
        ids = {}
        for name, (path, rules) in cameras.items():
            spec = CameraSpec(name=name, network="xueliang", unit_id=county.id, main_stream_url=path.as_uri())
            camera = sqlite_services.registry.create(session, spec, county.path, "test")
            camera.detection_rules = rules
            ids[name] = camera.id
        session.commit()
    client = redis.Redis.from_url(redis_url, decode_responses=True)

    def crowd_levels(name: str) -> list[str]:
        events = (Event.from_fields(f) for _, f in client.xrange(EVENTS_STREAM))
        return [e.evidence["level"] for e in events if e.kind == "crowd" and e.camera_id == ids[name]]

    with detection_worker(sqlite_services, client, stage):
        try:
            wait_for(lambda: "alarm" in crowd_levels("square") and "rising" in crowd_levels("gate"), 90)
        finally:
            print({name: crowd_levels(name) for name in cameras}, stage.figures.counted, stage.rules.crowd.counts)
    assert crowd_levels("square")[:2] == ["pre_alarm", "alarm"]
    assert crowd_levels("hall") == []
    assert crowd_levels("gate")[0] == "rising" and not {"pre_alarm", "alarm"} & set(crowd_levels("gate"))
    assert stage.figures.counted >= 6 and stage.figures.seconds["crowd"] > 0
    alarm = next(e for e in (Event.from_fields(f) for _, f in client.xrange(EVENTS_STREAM))
                 if e.camera_id == ids["square"] and e.evidence["level"] == "alarm")
    assert alarm.evidence["count"] >= 24 and alarm.evidence["area_m2"] == 8.0
    assert cv2.imread(str(tmp_path / "snapshots" / alarm.evidence["snapshot"])) is not None
