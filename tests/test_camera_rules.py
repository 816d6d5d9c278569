"""Per-camera detection rules: set through the API (validated, scoped, audited) and applied by
the worker reading the camera, live — a kitchen camera whose whole picture is an exclusion
zone raises nothing on a real fire scene while its neighbour does, until its rules are reset."""

from __future__ import annotations

from pathlib import Path

import redis
from fastapi.testclient import TestClient

from api.services import Services
from config.redis_names import EVENTS_STREAM
from detectors.events import Event
from detectors.rules import CameraRules, RuleEngine
from ingest.detection import load_stage
from registry.camera_spec import CameraSpec
from registry.rules_spec import RulesSpec
from registry.units import create_unit
from tests.conftest import MODEL_CACHE, Tree, camera_body, wait_for
from tests.detection_worker import detection_worker
from tests.scenes import clip_of, fire_scene

WHOLE = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
KITCHEN = {
    "zones": [{"name": "stoves", "polygon": WHOLE, "include": False},
              {"name": "door", "polygon": [[0.1, 0.5], [0.3, 0.5], [0.3, 1.0]], "area_m2": 4.0}],
    "thresholds": {"flame": 0.4},
    "persistence": {"k": 2, "n": 4},
    "armed": [{"start": "22:00", "end": "06:00"}],
}


def test_rules_round_trip_with_defaults_for_what_is_left_out(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    tech = login("technician", tree.town_a)
    cam = client.post("/api/v1/cameras", json=camera_body(tree.village_a1), headers=tech).json()
    url = f"/api/v1/cameras/{cam['id']}/rules"
    fresh = client.get(url, headers=tech).json()
    assert fresh["custom"] is False and fresh["rules"] == RulesSpec().model_dump()
    put = client.put(url, json=KITCHEN, headers=tech)
    assert put.status_code == 200, put.text
    rules = put.json()["rules"]
    assert put.json()["custom"] is True
    defaults = CameraRules().thresholds
    assert rules["thresholds"] == {"flame": 0.4, "smoke": defaults["smoke"], "person": defaults["person"]}
    assert rules["persistence"] == {"k": 2, "n": 4} and rules["cooldown_seconds"] == 600.0
    assert client.get(url, headers=tech).json() == put.json()
    compiled = RulesSpec.model_validate(rules).to_rules()
    assert compiled.armed == ((22 * 60, 6 * 60),) and not compiled.zones[0].include
    assert compiled.zones[1].area_m2 == 4.0
    reset = client.delete(url, headers=tech)
    assert reset.status_code == 200 and reset.json()["custom"] is False
    admin = login("admin", tree.county)
    audit = client.get("/api/v1/audit", params={"target_type": "camera"}, headers=admin).json()["items"]
    rule_rows = [e for e in audit if e["action"] == "camera.rules"]
    assert len(rule_rows) == 2
    assert rule_rows[0]["before"]["persistence"] == {"k": 2, "n": 4} and rule_rows[0]["after"] is None
    assert rule_rows[1]["before"] is None and rule_rows[1]["after"]["zones"][0]["name"] == "stoves"


def test_bad_rules_are_422_naming_the_field_and_change_nothing(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    cam = client.post("/api/v1/cameras", json=camera_body(tree.village_a1), headers=admin).json()
    url = f"/api/v1/cameras/{cam['id']}/rules"
    assert client.put(url, json=KITCHEN, headers=admin).status_code == 200
    cases = {
        "polygon": {"zones": [{"name": "z", "polygon": [[0, 0], [1, 0]]}]},
        "zones": {"zones": [{"name": "z", "polygon": WHOLE}, {"name": "z", "polygon": WHOLE}]},
        "flame": {"thresholds": {"flame": 1.5}},
        "persistence": {"persistence": {"k": 5, "n": 3}},
        "start": {"armed": [{"start": "25:00", "end": "06:00"}]},
        "area_m2": {"zones": [{"name": "z", "polygon": WHOLE, "area_m2": 0}]},
        "crowd_levels": {"crowd_levels": {"pre_alarm": 5, "alarm": 2}},
        "colour": {"colour": "red"},
    }
    for field, body in cases.items():
        response = client.put(url, json=body, headers=admin)
        assert response.status_code == 422, (field, response.text)
        assert field in response.text, (field, response.text)
    assert client.get(url, headers=admin).json()["rules"]["persistence"] == {"k": 2, "n": 4}


def test_rules_broken_in_the_database_are_a_409_and_can_be_replaced(client: TestClient, services: Services,
                                                                     tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    from registry.cameras import Camera

    admin = login("admin", tree.county)
    cam = client.post("/api/v1/cameras", json=camera_body(tree.village_a1), headers=admin).json()
    with services.sessions() as session:
        session.get(Camera, cam["id"]).detection_rules = '{"persistence": {"k": 9, "n": 2}}'  # type: ignore[union-attr]
        session.commit()
    url = f"/api/v1/cameras/{cam['id']}/rules"
    broken = client.get(url, headers=admin)
    assert broken.status_code == 409 and f"camera {cam['id']}" in broken.json()["detail"]
    for broken in ("{not json", "[1, 2]"):
        with services.sessions() as session:
            session.get(Camera, cam["id"]).detection_rules = broken  # type: ignore[union-attr]
            session.commit()
        assert client.get(url, headers=admin).status_code == 409
        assert client.put(url, json=KITCHEN, headers=admin).status_code == 200
    assert client.get(url, headers=admin).json()["rules"]["persistence"] == {"k": 2, "n": 4}


def test_rules_follow_roles_and_unit_scope(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    cam = client.post("/api/v1/cameras", json=camera_body(tree.village_a1), headers=admin).json()
    url = f"/api/v1/cameras/{cam['id']}/rules"
    operator = login("operator", tree.village_a1)
    assert client.get(url, headers=operator).status_code == 200
    assert client.put(url, json=KITCHEN, headers=operator).status_code == 403
    other_village = login("technician", tree.village_b1)
    assert client.get(url, headers=other_village).status_code == 404
    assert client.put(url, json=KITCHEN, headers=other_village).status_code == 404


def test_the_worker_applies_each_cameras_rules_and_their_changes(
    sqlite_services: Services, redis_url: str, model_files: dict[str, Path], tmp_path: Path
) -> None:
    stage = load_stage(MODEL_CACHE, ["fire_smoke"], None,
                       RuleEngine({}, CameraRules(persistence=(2, 3), cooldown_seconds=3600)))
    assert stage is not None
    fire = clip_of(fire_scene(stage.fire.detector, stage.fire.run), tmp_path / "fire.mp4")
    kitchen_rules = RulesSpec.model_validate({"zones": [{"name": "stoves", "polygon": WHOLE, "include": False}],
                                              "persistence": {"k": 2, "n": 3}, "cooldown_seconds": 3600})
    with sqlite_services.sessions() as session:
        county = create_unit(session, name="县", code="330199000000", parent_id=None, scope=None)
        ids = {}
        for name in ("kitchen", "warehouse"):
            spec = CameraSpec(name=name, network="xueliang", unit_id=county.id, main_stream_url=fire.as_uri())
            ids[name] = sqlite_services.registry.create(session, spec, county.path, "test").id
        kitchen = sqlite_services.registry.get(session, ids["kitchen"], county.path)
        sqlite_services.registry.set_rules(session, kitchen, kitchen_rules, "test")
        session.commit()
    client = redis.Redis.from_url(redis_url, decode_responses=True)

    def flames() -> list[int]:
        events = (Event.from_fields(fields) for _, fields in client.xrange(EVENTS_STREAM))
        return [e.camera_id for e in events if e.kind == "flame"]

    with detection_worker(sqlite_services, client, stage):
        wait_for(lambda: ids["warehouse"] in flames(), 30)
        frames = stage.figures.frames
        wait_for(lambda: stage.figures.frames >= frames + 6, 30)  # the kitchen had as long, and more
        assert flames() == [ids["warehouse"]]
        with sqlite_services.sessions() as session:  # what DELETE /cameras/{id}/rules does
            kitchen = sqlite_services.registry.get(session, ids["kitchen"], county.path)
            sqlite_services.registry.set_rules(session, kitchen, None, "test")
            session.commit()
        sqlite_services.registry.feed.publish("update", ids["kitchen"])
        wait_for(lambda: ids["kitchen"] in flames(), 30)
    assert sorted(flames()) == sorted(ids.values())  # one each: the warehouse's cooldown held


def test_a_worker_runs_the_defaults_for_rules_that_no_longer_validate(caplog) -> None:  # type: ignore[no-untyped-def]
    from ingest.camera_runner import CameraRunner

    assert CameraRunner._rules_of(7, None) is None
    assert CameraRunner._rules_of(7, RulesSpec(cooldown_seconds=5).model_dump_json()).cooldown_seconds == 5
    for broken in ('{"persistence": {"k": 9, "n": 2}}', "{not json"):
        assert CameraRunner._rules_of(7, broken) is None
    logged = [r for r in caplog.records if r.getMessage() == "camera_rules_invalid"]
    assert len(logged) == 2 and all(r.camera_id == 7 for r in logged)  # type: ignore[attr-defined]


def test_changing_one_cameras_rules_keeps_the_others_crowd_state() -> None:
    import numpy as np

    from detectors.rules import Zone

    def square(name: str) -> CameraRules:
        return CameraRules(zones=(Zone(name, tuple(map(tuple, WHOLE)), area_m2=1.0),), crowd_levels=(1.5, 2.5),
                           crowd_min_seconds=0, thresholds={"flame": 0.25, "smoke": 0.5, "person": 0.4})

    engine = RuleEngine({1: square("square"), 2: square("door")})
    cameras = np.array([2, 1])

    def raised(t: float) -> list[tuple[int, str]]:
        two_each = np.where(engine.zones.camera[None, :] == cameras[:, None], 2.0, 0.0)  # (frames, zones)
        events, _ = engine.crowd_events(two_each, cameras, np.full(2, t))
        return sorted((e.camera_id, e.evidence["level"]) for e in events)

    assert raised(0.0) == [(1, "pre_alarm"), (2, "pre_alarm")]
    assert raised(1.0) == []  # held: nothing new
    engine.update_rules({2: square("gate")})  # camera 2's zones change: its level starts again
    assert raised(2.0) == [(2, "pre_alarm")]  # camera 1 still remembers what it raised
