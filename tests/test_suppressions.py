"""Operators teach a camera: an alert marked `false_alarm` turns the flame and smoke boxes of its
events into suppressions of their camera (place and appearance), which stop the same false
alarm before the rules count it, while a real fire at the same place still passes; the API
lists and forgets them per camera, inside the caller's scope, audited, and the KPIs count what
they stopped.

The real pictures come from tests/assets (README there): frame 66 of `parking-lot.mp4`, which
the fire model reads as a whole-frame smoke (0.55–0.75) that passes the verifier, panned like a
camera; and the real smoke photographs of `fire-smoke/`, whose smoke boxes overlap that false
alarm's box by IoU 0.7–0.93 — a real smoke at the same place, of the same kind.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, text

from api.services import Services
from config.database import utcnow
from config.redis_names import REGISTRY_STREAM
from detectors.events import Event
from detectors.frames import FrameBatch
from detectors.rules import CameraRules, RuleEngine
from detectors.suppression import (
    DESCRIPTOR_SIZE,
    DISTANCE_MAX,
    IOU_MIN,
    Suppression,
    SuppressionTable,
    describe,
    distance,
    iou,
    kind_codes,
    novel,
    with_appearance,
)
from detectors.video_quality import QualityMonitor
from ingest.detection import DetectionStage, load_stage
from registry import suppressions
from registry.audit import verify_chain
from registry.suppressions import CameraSuppression, add_hits, for_cameras
from tests.alerting import add_camera, drain, engine_for, inject
from tests.conftest import MODEL_CACHE, Tree
from tests.scenes import FIRE_SMOKE, clean_samples, rgb

FALSE_SMOKE_FRAME = 66  # of parking-lot.mp4: whole-frame false smoke that passes the verifier
REAL_SMOKE = ("00315", "00348", "0153-2")  # fire-smoke pictures whose smoke box covers nearly the whole frame


def lot_frame() -> np.ndarray:
    return clean_samples(FALSE_SMOKE_FRAME + 1, every=1, name="parking-lot.mp4")[FALSE_SMOKE_FRAME]


def smoke_picture(stem: str) -> np.ndarray:
    return rgb(next((FIRE_SMOKE / "images").glob(stem + "_*")))


# -- the pure part ---------------------------------------------------------------------------
def test_the_appearance_is_colour_contrast_and_flame_per_cell() -> None:
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[:, :320] = (60, 120, 180)  # left half: flat blue-grey
    frame[:, 320:] = (250, 160, 40)  # right half: flame-coloured
    look = describe(frame[None], np.array([0, 0]), np.array([[0.0, 0.0, 1.0, 1.0], [0.999, 0.999, 1.0, 1.0]]))
    assert look.shape == (2, DESCRIPTOR_SIZE) and np.isfinite(look).all()
    cells = look[0].reshape(2, 2, 5)  # rows, columns, (r, g, b, contrast, flame)
    assert np.allclose(cells[:, 0, :3], np.array([60, 120, 180]) / 255, atol=1e-3)
    assert np.allclose(cells[:, 1, :3], np.array([250, 160, 40]) / 255, atol=1e-3)
    assert np.allclose(cells[..., 3], 0, atol=1e-3)  # flat: no contrast
    assert np.allclose(cells[:, 0, 4], 0) and np.allclose(cells[:, 1, 4], 1)
    assert ((look >= 0) & (look <= 1)).all()  # a box smaller than a pixel at the corner still has cells


def test_a_box_matches_only_its_own_cameras_suppressions_of_its_kind_at_its_place() -> None:
    frame = lot_frame()
    box = np.array([0.0, 0.01, 0.98, 0.99], np.float32)
    look = describe(frame[None], np.array([0]), box[None])[0]
    table = SuppressionTable()
    table.replace({7: [Suppression(70, 7, "smoke", tuple(box), tuple(look))], 8: []})
    frames = np.stack([frame] * 5)
    cameras = np.array([7, 8, 7, 7, 7])  # the same picture on another camera is not taught there
    kinds = np.array(["smoke", "smoke", "flame", "smoke", "person"])
    moved = np.array([0.0, 0.0, 0.5, 0.5], np.float32)  # IoU 0.26 with the taught box
    boxes = np.stack([box, box, box, moved, box])
    keep = table.keep(frames, np.arange(5), cameras, kinds, boxes)
    assert keep.tolist() == [False, True, True, True, True]
    assert table.take_hits() == {70: 1} and table.take_hits() == {}
    table.keep(frames, np.arange(5), cameras, kinds, boxes)
    table.replace({7: []})  # reloaded before the hits were taken: they are not lost
    assert len(table) == 0 and table.take_hits() == {70: 1}
    assert table.keep(frames, np.arange(5), cameras, kinds, boxes).all()


def test_repeated_samples_of_one_false_alarm_teach_one_suppression() -> None:
    frame = lot_frame()
    boxes = np.array([[0.0, 0.01, 0.98, 0.99], [0.01, 0.02, 0.99, 0.99], [0.0, 0.0, 0.3, 0.3]], np.float32)
    looks = describe(np.stack([frame, np.roll(frame, 6, axis=1), frame]), np.arange(3), boxes)
    codes = kind_codes(np.array(["smoke", "smoke", "smoke"]))
    none = (np.empty((0, 4)), np.empty(0, np.int64), np.empty((0, DESCRIPTOR_SIZE)))
    assert novel(boxes, codes, looks, *none).tolist() == [True, False, True]
    assert novel(boxes, codes, looks, boxes[:1], codes[:1], looks[:1]).tolist() == [False, False, True]


def test_fire_events_carry_the_appearance_of_their_boxes() -> None:
    frame = lot_frame()
    events = [Event(3, "smoke", 1.0, 0.6, {"boxes": [[0.0, 0.01, 0.98, 0.99], [0.1, 0.1, 0.2, 0.2]]}),
              Event(3, "crowd", 1.0, 2.0, {"level": "alarm"}), Event(4, "flame", 1.0, 0.7, {"boxes": []})]
    out = with_appearance(events, np.stack([np.zeros_like(frame), frame]), np.array([9, 3]))
    looks = out[0].evidence["appearance"]
    assert len(looks) == 2 and all(len(a) == DESCRIPTOR_SIZE for a in looks)
    assert np.allclose(looks[0], describe(frame[None], np.array([0]), np.array([[0.0, 0.01, 0.98, 0.99]]))[0],
                       atol=1e-4)
    assert "appearance" not in out[1].evidence and "appearance" not in out[2].evidence


# -- the real chain: the detection stage with the shipped models -------------------------------
def loose_stage() -> DetectionStage:
    """The chain with rules an operator could set (smoke from 0.25, every sample counts, no
    cooldown): the clean parking lot raises a false smoke on nearly every sample."""
    stage = load_stage(MODEL_CACHE, ["fire_smoke", "people"], None, RuleEngine({}, CameraRules(
        thresholds={"flame": 0.25, "smoke": 0.25, "person": 0.4}, persistence=(1, 1), cooldown_seconds=0)))
    assert stage is not None
    return stage


def play(stage: DetectionStage, quality: QualityMonitor, picture: np.ndarray, samples: int, start: float,
         shift: int = 15) -> list[Event]:
    """`samples` samples of camera 1 filming `picture` with a slow pan (so that it moves)."""
    events = []
    for i in range(samples):
        batch = FrameBatch.stack([1], [start + i], [np.roll(picture, shift * i, axis=1)])
        events += stage.run(batch, quality.observe(batch), now=1000.0 + start + i)
    return events


def test_a_taught_false_alarm_is_stopped_and_real_smoke_at_the_same_place_still_passes(
    model_files: dict[str, Path]
) -> None:
    stage, quality = loose_stage(), QualityMonitor()
    false = play(stage, quality, lot_frame(), 8, 0.0, shift=3)
    assert len(false) >= 6 and {e.kind for e in false} == {"smoke"}
    boxes = np.array([b for e in false for b in e.evidence["boxes"]], np.float32)
    looks = np.array([a for e in false for a in e.evidence["appearance"]], np.float32)
    codes = kind_codes(np.full(len(boxes), "smoke"))
    taught = np.flatnonzero(novel(boxes, codes, looks, np.empty((0, 4)), np.empty(0, np.int64),
                                  np.empty((0, DESCRIPTOR_SIZE))))
    stage.suppressions.replace({1: [Suppression(int(i), 1, "smoke", tuple(boxes[i]), tuple(looks[i]))
                                    for i in taught]})
    assert play(stage, quality, lot_frame(), 8, 100.0, shift=3) == []
    assert stage.figures.suppressed >= 6
    for n, stem in enumerate(REAL_SMOKE):
        before = stage.figures.suppressed
        real = play(stage, quality, smoke_picture(stem), 4, 200.0 + 10 * n)
        assert [e.kind for e in real] == ["smoke"] * 4, stem
        assert stage.figures.suppressed == before, stem
        place = iou(np.array(real[0].evidence["boxes"])[:, None], boxes[taught][None]).max()
        look = distance(np.array(real[0].evidence["appearance"])[:, None], looks[taught][None]).min()
        assert place >= IOU_MIN and look > DISTANCE_MAX, stem  # the same place, another look


# -- registry and API: both databases ----------------------------------------------------------
def looks_of(boxes: list[list[float]]) -> list[list[float]]:
    frame = lot_frame()
    return np.round(describe(frame[None], np.zeros(len(boxes), np.int64), np.array(boxes)), 4).tolist()


WHOLE, CORNER, OTHER = [0.0, 0.01, 0.98, 0.99], [0.0, 0.0, 0.3, 0.3], [0.6, 0.6, 0.95, 0.95]


def false_smoke(services: Services, camera_id: int, boxes: list[list[float]], **extra: object) -> None:
    inject(services, camera_id, kind="smoke", score=0.6, boxes=boxes, appearance=looks_of(boxes), **extra)


def registry_updates(services: Services) -> list[dict[str, str]]:
    assert services.redis is not None
    return [fields for _, fields in services.redis.xrange(REGISTRY_STREAM)]


def test_false_alarm_teaches_the_camera_and_the_api_shows_and_forgets_it(
    client: TestClient, services: Services, tree: Tree, login  # type: ignore[no-untyped-def]
) -> None:
    admin = login("admin", tree.county)
    operator = login("operator", tree.village_a1, "wang")
    technician = login("technician", tree.village_a1, "li")
    stranger = login("admin", tree.town_b)
    gate = add_camera(client, admin, tree.village_a1, "gate")
    yard = add_camera(client, admin, tree.village_b1, "yard")
    engine = engine_for(services)
    for _ in range(5):  # the same false alarm, five times: one suppression
        false_smoke(services, gate, [WHOLE, CORNER])
    drain(engine)
    [alert] = client.get("/api/v1/alerts", headers=operator).json()["items"]
    assert client.get(f"/api/v1/cameras/{gate}/suppressions", headers=operator).json()["count"] == 0
    before = len(registry_updates(services))
    marked = client.post(f"/api/v1/alerts/{alert['id']}/false_alarm", json={"reason": "停车场地面"}, headers=operator)
    assert marked.status_code == 200 and marked.json()["state"] == "false_alarm"
    listed = client.get(f"/api/v1/cameras/{gate}/suppressions", headers=operator).json()
    assert listed["count"] == 2 and listed["limit"] == suppressions.MAX_PER_CAMERA and listed["hits"] == 0
    assert sorted(tuple(s["box"]) for s in listed["items"]) == sorted([tuple(WHOLE), tuple(CORNER)])
    assert {(s["kind"], s["alert_id"], s["created_by"]) for s in listed["items"]} == {("smoke", alert["id"], "user:wang")}
    assert [u["op"] + ":" + u["camera_id"] for u in registry_updates(services)[before:]] == [f"taught:{gate}"]
    learned = client.get("/api/v1/audit", params={"action": "camera.suppressions"}, headers=admin).json()["items"]
    assert [(e["action"], e["actor"], e["target_id"], e["after"]["alert_id"]) for e in learned] == [
        ("camera.suppressions.learn", "user:wang", gate, alert["id"])]

    # scope and roles: those of the camera's rules
    assert client.get(f"/api/v1/cameras/{gate}/suppressions").status_code == 401
    assert client.get(f"/api/v1/cameras/{gate}/suppressions", headers=stranger).status_code == 404
    assert client.delete(f"/api/v1/cameras/{gate}/suppressions", headers=stranger).status_code == 404
    assert client.delete(f"/api/v1/cameras/{gate}/suppressions", headers=operator).status_code == 403
    assert client.get("/api/v1/cameras/0/suppressions", headers=admin).status_code == 422
    assert client.delete(f"/api/v1/cameras/{gate}/suppressions/99999999999", headers=admin).status_code == 422
    false_smoke(services, yard, [OTHER])
    drain(engine)
    other = next(a for a in client.get("/api/v1/alerts", headers=admin).json()["items"] if a["camera_id"] == yard)
    assert client.post(f"/api/v1/alerts/{other['id']}/false_alarm", json={"reason": "x"}, headers=admin).status_code == 200
    [yard_row] = client.get(f"/api/v1/cameras/{yard}/suppressions", headers=admin).json()["items"]
    assert client.delete(f"/api/v1/cameras/{gate}/suppressions/{yard_row['id']}", headers=admin).status_code == 404

    one = listed["items"][0]["id"]
    before = len(registry_updates(services))
    assert client.delete(f"/api/v1/cameras/{gate}/suppressions/{one}", headers=technician).status_code == 204
    assert client.delete(f"/api/v1/cameras/{gate}/suppressions/{one}", headers=technician).status_code == 404
    assert [u["op"] + ":" + u["camera_id"] for u in registry_updates(services)[before:]] == [f"taught:{gate}"]
    gone = client.delete(f"/api/v1/cameras/{gate}/suppressions", headers=technician).json()
    assert gone == {"camera_id": gate, "deleted": 1}
    assert client.get(f"/api/v1/cameras/{gate}/suppressions", headers=admin).json()["count"] == 0
    assert client.delete(f"/api/v1/cameras/{gate}/suppressions", headers=technician).json()["deleted"] == 0
    deleted = client.get("/api/v1/audit", params={"action": "camera.suppressions.delete"}, headers=admin).json()
    assert [(e["actor"], len(e["before"]["ids"])) for e in deleted["items"]] == [("user:li", 1), ("user:li", 1)]
    with services.sessions() as session:
        assert verify_chain(session).intact


def test_reopening_a_false_alarm_takes_back_what_it_taught(
    client: TestClient, services: Services, tree: Tree, login  # type: ignore[no-untyped-def]
) -> None:
    operator, admin = login("operator", tree.county), login("admin", tree.county)
    gate = add_camera(client, admin, tree.village_a1, "gate")
    engine = engine_for(services)
    false_smoke(services, gate, [WHOLE])
    drain(engine)
    [alert] = client.get("/api/v1/alerts", headers=operator).json()["items"]
    url = f"/api/v1/alerts/{alert['id']}"
    assert client.post(f"{url}/false_alarm", json={"reason": "地面"}, headers=operator).status_code == 200
    assert client.get(f"/api/v1/cameras/{gate}/suppressions", headers=operator).json()["count"] == 1
    assert client.post(f"{url}/reopen", json={"reason": "真的起火了"}, headers=operator).status_code == 200
    assert client.get(f"/api/v1/cameras/{gate}/suppressions", headers=operator).json()["count"] == 0
    history = client.get("/api/v1/audit", params={"action": "camera.suppressions"}, headers=admin).json()["items"]
    assert [e["action"] for e in history] == ["camera.suppressions.delete", "camera.suppressions.learn"]
    assert history[0]["after"]["reason"] == f"alert {alert['code']} reopened"


def test_what_events_claim_is_checked_and_bounded(
    client: TestClient, services: Services, tree: Tree, login, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    """Anything that can write to Redis can write an event: only well-formed flame and smoke
    boxes teach, at most 32 per event, and a camera keeps at most `MAX_PER_CAMERA` (the oldest go)."""
    admin = login("admin", tree.county)
    gate = add_camera(client, admin, tree.village_a1, "gate")
    engine = engine_for(services)
    look = looks_of([WHOLE])[0]
    bad = [
        {"boxes": [WHOLE], "appearance": [look[:-1]]},  # too short
        {"boxes": [WHOLE], "appearance": [[*look[:-1], 7.0]]},  # out of range
        {"boxes": [WHOLE], "appearance": [[*look[:-1], "0.1"]]},  # not a number
        {"boxes": [[0.9, 0.1, 0.2, 0.5]], "appearance": [look]},  # inverted
        {"boxes": [[0, 0, 1.5, 1]], "appearance": [look]},  # outside the picture
        {"boxes": WHOLE, "appearance": look},  # not lists of lists
        {"boxes": [WHOLE], "appearance": {"a": 1}},
    ]
    for evidence in bad:
        inject(services, gate, kind="smoke", score=0.6, **evidence)
    inject(services, gate, kind="crowd", score=3.0, boxes=[WHOLE], appearance=[look])  # not a fire kind
    drain(engine)
    for item in client.get("/api/v1/alerts", headers=admin).json()["items"]:
        assert client.post(f"/api/v1/alerts/{item['id']}/false_alarm", json={"reason": "x"},
                           headers=admin).status_code == 200
    assert client.get(f"/api/v1/cameras/{gate}/suppressions", headers=admin).json()["count"] == 0
    assert client.post("/api/v1/alerts/1/false_alarm", json={"reason": "a\nb"}, headers=admin).status_code == 422

    grid = [[x / 10, y / 10, x / 10 + 0.1, y / 10 + 0.1] for x in range(10) for y in range(10)]  # 100 places
    monkeypatch.setattr(suppressions, "MAX_PER_CAMERA", 20)

    def mark_next(boxes: list[list[float]]) -> dict:  # type: ignore[type-arg]
        inject(services, gate, kind="smoke", score=0.6, boxes=boxes, appearance=looks_of(boxes))
        drain(engine)
        alert = next(a for a in client.get("/api/v1/alerts", headers=admin).json()["items"] if a["state"] == "new")
        assert client.post(f"/api/v1/alerts/{alert['id']}/false_alarm", json={"reason": "x"},
                           headers=admin).status_code == 200
        return client.get("/api/v1/audit", params={"action": "camera.suppressions.learn"},  # type: ignore[no-any-return]
                          headers=admin).json()["items"][0]

    learned = mark_next(grid)  # 32 taken from the event, the newest 20 kept
    assert len(learned["after"]["added"]) == 20 and learned["after"]["dropped_oldest"] == []
    rows = client.get(f"/api/v1/cameras/{gate}/suppressions", headers=admin).json()
    assert rows["count"] == 20 and rows["limit"] == 20
    assert [s["box"] for s in rows["items"]] == np.round(grid[12:32], 4).tolist()
    wide = [[0.0, y / 5, 1.0, y / 5 + 0.2] for y in range(5)]  # five new places: the five oldest go
    learned = mark_next(wide)
    assert learned["after"]["dropped_oldest"] == [s["id"] for s in rows["items"][:5]]
    rows = client.get(f"/api/v1/cameras/{gate}/suppressions", headers=admin).json()
    assert [s["box"] for s in rows["items"]] == np.round(grid[17:32] + wide, 4).tolist()


def test_the_worker_loads_them_and_the_kpis_count_what_they_stopped(
    client: TestClient, services: Services, tree: Tree, login  # type: ignore[no-untyped-def]
) -> None:
    admin = login("admin", tree.county)
    gate = add_camera(client, admin, tree.village_a1, "gate")
    quiet = add_camera(client, admin, tree.village_a2, "quiet")
    engine = engine_for(services)
    false_smoke(services, gate, [WHOLE, CORNER])
    drain(engine)
    [alert] = client.get("/api/v1/alerts", headers=admin).json()["items"]
    client.post(f"/api/v1/alerts/{alert['id']}/false_alarm", json={"reason": "x"}, headers=admin)
    with services.sessions() as session:
        loaded = for_cameras(session, [gate, quiet])
        assert sorted(s.box for s in loaded[gate]) == sorted([tuple(WHOLE), tuple(CORNER)]) and loaded[quiet] == []
        ids = [s.id for s in loaded[gate]]
        add_hits(session, {ids[0]: 5, ids[1]: 2, 10**6: 9}, utcnow())  # 10**6: deleted meanwhile
        add_hits(session, {ids[0]: 1}, utcnow())
        session.commit()
    with services.sessions() as session:  # a row edited by hand is left out, not a crash of the worker
        look = looks_of([WHOLE])[0]
        for box, appearance in ((WHOLE, [0.5] * 3), (None, look), (WHOLE, {"a": 1}), ([10**400, 0, 1, 1], look)):
            session.add(CameraSuppression(camera_id=gate, kind="smoke", box=box, appearance=appearance,
                                          created_by="x", hits=None))
        session.flush()
        if session.bind.dialect.name == "sqlite":  # text that is not JSON at all: SQLite stores what it is given
            session.execute(text("UPDATE camera_suppressions SET box = '[0,0,1' WHERE id = "
                                 "(SELECT max(id) FROM camera_suppressions)"))
        session.commit()
        assert sorted(s.id for s in for_cameras(session, [gate])[gate]) == sorted(ids)
        claim = {"boxes": [OTHER], "appearance": looks_of([OTHER])}
        assert suppressions.learn(session, 1, [(gate, "smoke", claim, utcnow())], "user:x")[0] == {gate}
        # and learning goes on beside it; but not onto a camera registered after the events (SQLite
        # gives a deleted camera's id to the next one), nor onto one outside the marker's scope
        long_ago = utcnow() - timedelta(days=1)
        assert suppressions.learn(session, 2, [(gate, "smoke", claim, long_ago)], "user:x") == (set(), [])
        assert suppressions.learn(session, 3, [(gate, "smoke", claim, utcnow())], "user:x",
                                  scope=tree.town_b.path) == (set(), [])
        session.commit()
    shown = client.get(f"/api/v1/cameras/{gate}/suppressions", headers=admin)  # the malformed rows left out
    assert shown.status_code == 200 and shown.json()["count"] == len(ids) + 1
    with services.sessions() as session:
        session.execute(delete(CameraSuppression).where(CameraSuppression.id.not_in(ids)))
        session.commit()
    listed = client.get(f"/api/v1/cameras/{gate}/suppressions", headers=admin).json()
    assert listed["hits"] == 8 and {s["hits"] for s in listed["items"]} == {6, 2}
    assert all(s["last_hit_at"] is not None for s in listed["items"])
    units = {u["unit_id"]: u for u in client.get("/api/v1/stats", headers=admin).json()["units"]}
    assert (units[tree.county.id]["suppressions"], units[tree.county.id]["suppressed_candidates"]) == (2, 8)
    assert (units[tree.village_a1.id]["suppressions"], units[tree.village_a1.id]["suppressed_candidates"]) == (2, 8)
    assert (units[tree.village_a2.id]["suppressions"], units[tree.town_b.id]["suppressed_candidates"]) == (0, 0)
    client.delete(f"/api/v1/cameras/{gate}", headers=admin)  # they go with their camera
    with services.sessions() as session:
        assert session.scalars(select(CameraSuppression)).all() == []
