"""Events become alerts: routed to the camera's unit, merged per camera and per nearby incident,
graded by the configured rules, numbered with case codes, and closed through the lifecycle
routes with every step in the audit chain."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from alerts.delivery import Delivery, prune
from alerts.escalation import sweep
from alerts.feed import changes_after
from alerts.model import Alert
from api.services import Services
from config.alerting import AlertSettings, Deadline
from config.database import utcnow
from config.redis_names import ALERT_ENGINE_GROUP, EVENTS_STREAM, REJECTED_EVENTS_STREAM
from registry.audit import verify_chain
from tests.alerting import FAR, NEAR, add_camera, drain, engine_for, inject, one_fire, stored_events
from tests.conftest import Tree


def _alerts(client: TestClient, headers: dict[str, str], **params: object) -> list[dict]:  # type: ignore[type-arg]
    response = client.get("/api/v1/alerts", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def test_events_become_alerts_merged_by_camera_and_incident(client: TestClient, services: Services, tree: Tree,
                                                            login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    gate = add_camera(client, admin, tree.village_a1, "gate")
    yard = add_camera(client, admin, tree.village_a1, "yard", NEAR)
    hill = add_camera(client, admin, tree.village_a1, "hill", FAR)
    over = add_camera(client, admin, tree.village_a2, "over the road", NEAR)
    engine = engine_for(services)
    inject(services, gate, score=0.6, snapshot="1/a.jpg")
    inject(services, gate, score=0.9, snapshot="1/b.jpg")
    inject(services, yard, score=0.5)  # 100 m away, same village: the same incident
    inject(services, hill, score=0.5)  # 5 km away: its own alert
    inject(services, over, score=0.5)  # near, but another village's camera: routed to that village
    inject(services, gate, kind="smoke", score=0.6)  # another kind: its own alert
    drain(engine)
    alerts = {(a["camera_id"], a["kind"]): a for a in _alerts(client, admin)}
    assert len(alerts) == 4
    fire = alerts[(gate, "flame")]
    assert fire["camera_ids"] == [gate, yard] and fire["event_count"] == 3
    assert fire["score"] == pytest.approx(0.9) and fire["snapshot"] == "1/b.jpg"
    assert fire["unit_id"] == fire["level_unit_id"] == tree.village_a1.id and fire["state"] == "new"
    assert fire["severity"] == "major" and fire["ack_due_at"] is not None
    assert alerts[(over, "flame")]["unit_id"] == tree.village_a2.id
    assert alerts[(gate, "smoke")]["severity"] == "minor"
    day = utcnow().astimezone(services.alert_policy.zone).strftime("%Y%m%d")
    codes = sorted(a["code"] for a in alerts.values())
    assert codes[:3] == [f"{tree.village_a1.code}-{day}-000{i}" for i in (1, 2, 3)]
    assert codes[3] == f"{tree.village_a2.code}-{day}-0001"
    events = client.get(f"/api/v1/alerts/{fire['id']}/events", headers=admin).json()
    assert [e["camera_id"] for e in events].count(gate) == 2 and len(events) == 3
    assert stored_events(services) == 6
    with services.sessions() as session:
        feed = changes_after(session, 0)
        assert [c.id for c in feed] == list(range(1, len(feed) + 1))  # numbered without gaps


def test_a_redelivered_event_is_not_counted_twice(client: TestClient, services: Services, tree: Tree,
                                                  login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    gate, engine, event = one_fire(client, services, admin, tree.village_a1)
    assert services.redis is not None
    services.redis.xadd(EVENTS_STREAM, event.fields())  # a producer that retried
    services.redis.xadd(EVENTS_STREAM, event.fields())
    drain(engine)
    [alert] = _alerts(client, admin)
    assert alert["event_count"] == 1 and stored_events(services) == 1
    assert engine.totals.duplicates == 2


def test_severity_rules_and_broadcast_up_the_chain(client: TestClient, services: Services, tree: Tree,
                                                   login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    depot = add_camera(client, admin, tree.village_a1, "fuel depot", tags=["hazmat"])
    square = add_camera(client, admin, tree.village_b1, "square", FAR)
    engine = engine_for(services)
    inject(services, depot, score=0.3)
    for _ in range(2):
        inject(services, square, kind="crowd", score=2.5, level="pre_alarm", zone="market")
    drain(engine)
    alerts = {a["camera_id"]: a for a in _alerts(client, admin)}
    hazmat = alerts[depot]
    assert hazmat["severity"] == "critical"
    assert hazmat["addressed"] == [tree.county.id, tree.town_a.id, tree.village_a1.id]  # every level at once
    assert alerts[square]["severity"] == "minor"
    inject(services, square, kind="crowd", score=4.5, level="alarm", zone="market")
    drain(engine)
    raised = client.get(f"/api/v1/alerts/{alerts[square]['id']}", headers=admin).json()
    assert raised["severity"] == "major" and raised["event_count"] == 3
    assert [h["action"] for h in raised["history"]] == ["alert.create", "alert.severity"]


def test_the_lifecycle_with_feedback_and_evidence(client: TestClient, services: Services, tree: Tree,
                                                  login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    operator = login("operator", tree.village_a1, "zhang")
    gate, engine, _ = one_fire(client, services, admin, tree.village_a1)
    [alert] = _alerts(client, operator)
    url = f"/api/v1/alerts/{alert['id']}"
    assert client.post(f"{url}/acknowledge", headers=operator).json()["state"] == "acknowledged"
    again = client.post(f"{url}/acknowledge", headers=operator)
    assert again.status_code == 409 and again.json()["state"] == "acknowledged"
    nobody = client.post(f"{url}/dispatch", json={}, headers=operator)
    assert nobody.status_code == 422 and nobody.json()["field"] == "assignee"
    sent = client.post(f"{url}/dispatch", json={"assignee": "东门村消防队 李队长"}, headers=operator).json()
    assert sent["state"] == "dispatched" and sent["assignee"] == "东门村消防队 李队长"
    assert client.post(f"{url}/resolve", data={"feedback": ""}, headers=operator).status_code == 422
    done = client.post(f"{url}/resolve", data={"feedback": "灭火完毕，无人员伤亡"},
                       files={"evidence": ("现场.jpg", b"\xff\xd8\xff\xe0 picture", "image/jpeg")}, headers=operator)
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "resolved" and done.json()["resolve_due_at"] is None
    assert client.get(f"{url}/evidence", headers=operator).content == b"\xff\xd8\xff\xe0 picture"
    assert client.post(f"{url}/false_alarm", json={"reason": "x"}, headers=operator).status_code == 409
    assert client.post(f"{url}/reopen", json={}, headers=operator).json()["field"] == "reason"
    reopened = client.post(f"{url}/reopen", json={"reason": "复燃"}, headers=operator).json()
    assert reopened["state"] == "new" and reopened["ack_due_at"] is not None
    assert client.post(f"{url}/false_alarm", json={"reason": "炊烟"}, headers=operator).json()["state"] == "false_alarm"
    assert client.post(f"{url}/fly", headers=operator).status_code == 422
    history = client.get(url, headers=operator).json()["history"]
    assert [h["action"] for h in history] == ["alert.create", "alert.acknowledge", "alert.dispatch", "alert.resolve",
                                              "alert.reopen", "alert.false_alarm"]
    assert {h["actor"] for h in history[1:]} == {"user:zhang"}
    audited = client.get("/api/v1/audit", params={"alert": alert["id"], "actor": "user:zhang"}, headers=admin).json()
    assert [e["action"] for e in audited["items"]] == ["alert.false_alarm", "alert.reopen", "alert.resolve",
                                                       "alert.dispatch", "alert.acknowledge"]  # newest first
    assert history[3]["after"]["feedback"] == "灭火完毕，无人员伤亡"
    with services.sessions() as session:
        assert verify_chain(session).intact
        assert [c.change for c in changes_after(session, 0)] == [
            "created", "acknowledged", "dispatched", "resolved", "reopened", "false_alarm"]


def test_scope_roles_and_unknown_alerts(client: TestClient, services: Services, tree: Tree,
                                        login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    a_cam = add_camera(client, admin, tree.village_a1, "a")
    b_cam = add_camera(client, admin, tree.village_b1, "b", FAR)
    engine = engine_for(services)
    inject(services, a_cam)
    inject(services, b_cam)
    drain(engine)
    alerts = {a["camera_id"]: a for a in _alerts(client, admin)}
    a_operator = login("operator", tree.village_a1)
    town_operator = login("operator", tree.town_b)
    investigator = login("investigator", tree.county)
    assert [a["camera_id"] for a in _alerts(client, a_operator)] == [a_cam]
    assert [a["camera_id"] for a in _alerts(client, town_operator)] == [b_cam]
    b_url = f"/api/v1/alerts/{alerts[b_cam]['id']}"
    assert client.get(b_url, headers=a_operator).status_code == 404
    assert client.get(f"{b_url}/events", headers=a_operator).status_code == 404
    assert client.post(f"{b_url}/acknowledge", headers=a_operator).status_code == 404
    assert client.post(f"{b_url}/acknowledge", headers=investigator).status_code == 403
    assert client.get(b_url, headers=investigator).status_code == 200
    assert client.get("/api/v1/alerts", params={"unit": tree.village_b1.id}, headers=a_operator).status_code == 404
    assert client.get("/api/v1/alerts/999999", headers=admin).status_code == 404
    assert client.post(f"{b_url}/acknowledge", headers=town_operator).status_code == 200


def test_missed_deadlines_escalate_up_to_the_county(client: TestClient, services: Services, tree: Tree,
                                                    login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    gate, engine, _ = one_fire(client, services, admin, tree.village_a1)
    policy = services.alert_policy
    later = utcnow() + timedelta(seconds=policy.settings.deadlines["village"]["major"].acknowledge_seconds + 1)
    with services.sessions() as session:
        assert sweep(session, policy, utcnow()) == 0  # nothing due yet
        assert sweep(session, policy, later) > 0
        alert = session.scalars(select(Alert)).one()
        assert (alert.level_unit_id, alert.escalations, alert.addressed) == (tree.town_a.id, 1, [tree.town_a.id])
        assert alert.ack_due_at is not None and alert.ack_due_at > later
        much_later = alert.ack_due_at + timedelta(seconds=1)
        sweep(session, policy, much_later)
        session.refresh(alert)
        assert alert.level_unit_id == tree.county.id
        sweep(session, policy, alert.ack_due_at + timedelta(seconds=1))  # no one above the county
        session.refresh(alert)
        assert alert.level_unit_id == tree.county.id and alert.ack_due_at is None
        assert [c.change for c in changes_after(session, 0)] == ["created", "escalated", "escalated", "overdue"]
    top = client.post(f"/api/v1/alerts/{alert.id}/escalate", json={"reason": "再上报"}, headers=admin)
    assert top.status_code == 409 and top.json()["state"] == "new"


def test_a_camera_back_online_closes_its_offline_alert(client: TestClient, services: Services, tree: Tree,
                                                       login) -> None:  # type: ignore[no-untyped-def]
    """...once it has stayed online for `offline_recovery_seconds` (flapping: test_alert_engine_faults)."""
    admin = login("admin", tree.county)
    gate = add_camera(client, admin, tree.village_a1, "gate")
    engine = engine_for(services)
    inject(services, gate, kind="camera_offline", score=1.0, error="timeout")
    drain(engine)
    [alert] = _alerts(client, admin)
    assert alert["kind"] == "camera_offline" and alert["severity"] == "info"
    inject(services, gate, kind="camera_online", score=1.0)
    drain(engine)
    [back] = _alerts(client, admin)
    assert back["state"] == "new" and back["clears_at"] is not None and back["evidence"]["outages"] == 1
    with services.sessions() as session:
        sweep(session, services.alert_policy, utcnow() + timedelta(
            seconds=services.alert_policy.settings.offline_recovery_seconds + 1))
    [closed] = _alerts(client, admin)
    assert closed["state"] == "resolved" and closed["feedback"] == "camera back online"


def test_unreadable_entries_are_set_aside_and_the_rest_go_on(client: TestClient, services: Services, tree: Tree,
                                                             login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    gate = add_camera(client, admin, tree.village_a1, "gate")
    engine = engine_for(services)
    assert services.redis is not None
    services.redis.xadd(EVENTS_STREAM, {"camera_id": "x", "kind": "flame"})
    inject(services, gate)
    inject(services, 999_999)  # a camera that does not exist
    drain(engine)
    assert len(_alerts(client, admin)) == 1
    unreadable, unknown = [fields for _, fields in services.redis.xrange(REJECTED_EVENTS_STREAM)]
    assert unreadable["camera_id"] == "x" and "unreadable" in unreadable["reason"]
    assert unknown["camera_id"] == "999999" and unknown["reason"] == "camera 999999 does not exist"
    assert services.redis.xpending(EVENTS_STREAM, ALERT_ENGINE_GROUP)["pending"] == 0


def test_short_deadlines_come_from_settings() -> None:
    deadlines = {level: {s: Deadline(acknowledge_seconds=1, resolve_seconds=2) for s in
                         ("info", "minor", "major", "critical")} for level in ("county", "township", "village")}
    settings = AlertSettings(deadlines=deadlines)
    assert settings.deadlines["village"]["minor"].acknowledge_seconds == 1
    with pytest.raises(ValueError, match="deadlines.township lacks"):
        AlertSettings(deadlines={"village": deadlines["village"], "county": deadlines["county"]})


def test_the_live_feed_refuses_bad_requests_clearly(client: TestClient, tree: Tree, login) -> None:  # type: ignore[no-untyped-def]
    operator = login("operator", tree.village_a1)
    assert client.get("/api/v1/alerts/stream").status_code == 401
    assert client.get("/api/v1/alerts/stream", params={"access_token": "lk_nothing"}).status_code == 401
    bad = client.get("/api/v1/alerts/stream", headers=operator | {"Last-Event-ID": "yesterday"})
    assert bad.status_code == 422 and bad.json()["field"] == "Last-Event-ID"
    assert client.get("/api/v1/alerts/stream", params={"min_severity": "huge"}, headers=operator).status_code == 422


def test_kpis_per_unit_rolled_up_the_tree(client: TestClient, services: Services, tree: Tree,
                                          login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    cams = [add_camera(client, admin, tree.village_a1, f"a{i}", at) for i, at in enumerate((None, FAR, NEAR))]
    b_cam = add_camera(client, admin, tree.village_b1, "b")
    engine = engine_for(services)
    for cam, kind in zip(cams, ("flame", "smoke", "flame")):
        inject(services, cam, kind)
    inject(services, b_cam, "camera_offline")
    drain(engine)
    ids = {a["camera_id"]: a["id"] for a in _alerts(client, admin)}
    put_out, smoke, open_fire = ids[cams[0]], ids[cams[1]], ids[cams[2]]
    client.post(f"/api/v1/alerts/{put_out}/acknowledge", headers=admin)
    client.post(f"/api/v1/alerts/{put_out}/resolve", data={"feedback": "done"}, headers=admin)
    client.post(f"/api/v1/alerts/{smoke}/acknowledge", headers=admin)
    client.post(f"/api/v1/alerts/{smoke}/false_alarm", json={"reason": "炊烟"}, headers=admin)
    client.post(f"/api/v1/alerts/{open_fire}/escalate", json={"reason": "增援"}, headers=admin)
    start = utcnow() - timedelta(hours=1)
    with services.sessions() as session:  # known times: acknowledged after 60 s and 120 s, closed after 600 s and 300 s
        for alert_id, ack, closed in ((put_out, 60, 600), (smoke, 120, 300)):
            alert = session.get_one(Alert, alert_id)
            alert.created_at = start
            alert.acknowledged_at, alert.closed_at = start + timedelta(seconds=ack), start + timedelta(seconds=closed)
        session.commit()
    figures = client.get("/api/v1/stats", headers=admin).json()
    by_unit = {u["unit_id"]: u for u in figures["units"]}
    assert figures["units"][0]["unit_id"] == tree.county.id
    village = by_unit[tree.village_a1.id]
    assert village["alerts"] == 3 and village["by_kind"] == {"flame": 2, "smoke": 1}
    assert village["by_state"] == {"new": 1, "acknowledged": 0, "dispatched": 0, "resolved": 1, "false_alarm": 1}
    assert village["acknowledge_seconds"] == {"median": 90.0, "p90": 114.0, "count": 2}
    assert village["resolve_seconds"] == {"median": 600.0, "p90": 600.0, "count": 1}
    assert (village["closure_rate"], village["escalation_rate"], village["false_alarm_rate"]) == (0.6667, 0.3333, 0.5)
    assert village["cameras"] == 3 and village["online_rate"] == 0.0
    assert by_unit[tree.town_a.id]["alerts"] == 3 and by_unit[tree.village_a2.id]["alerts"] == 0
    county = by_unit[tree.county.id]
    assert county["alerts"] == 4 and county["by_kind"]["camera_offline"] == 1
    assert (county["closure_rate"], county["escalation_rate"], county["false_alarm_rate"]) == (0.5, 0.25, 0.5)
    assert by_unit[tree.village_a2.id]["closure_rate"] is None
    later = client.get("/api/v1/stats", params={"since": utcnow().isoformat()}, headers=admin).json()
    assert later["units"][0]["alerts"] == 0
    operator = login("operator", tree.village_a1)
    assert [u["unit_id"] for u in client.get("/api/v1/stats", headers=operator).json()["units"]] == [tree.village_a1.id]
    assert client.get("/api/v1/stats", params={"unit": tree.town_a.id}, headers=operator).status_code == 404


def test_old_feed_changes_and_finished_deliveries_are_pruned(client: TestClient, services: Services, tree: Tree,
                                                             login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    gate, engine, _ = one_fire(client, services, admin, tree.village_a1)
    now = utcnow()
    with services.sessions() as session:
        session.add_all([Delivery(subscription_id=1, alert_id=1, change_id=1, channel="webhook", body="{}", state=state,
                                  next_attempt_at=now, created_at=now - timedelta(days=100)) for state in
                         ("delivered", "dead", "pending")])
        session.commit()
        assert prune(session, now - timedelta(days=90)) == (0, 2)  # a pending delivery is never dropped
        assert prune(session, now + timedelta(seconds=1)) == (1, 0)
        assert len(session.scalars(select(Alert)).all()) == 1  # the alert itself stays


def test_metrics_show_open_alerts_and_the_engine_backlog(client: TestClient, services: Services, tree: Tree,
                                                         login) -> None:  # type: ignore[no-untyped-def]
    admin = login("admin", tree.county)
    gate, engine, _ = one_fire(client, services, admin, tree.village_a1)
    inject(services, gate, kind="smoke")  # not absorbed yet
    metrics = client.get("/metrics").text
    assert 'lookout_alerts_open{kind="flame",severity="major"} 1.0' in metrics
    assert 'lookout_alert_engine_backlog{kind="unread"} 1.0' in metrics
    assert 'lookout_deliveries{state="dead"} 0.0' in metrics
    drain(engine)
    assert 'lookout_alert_engine_backlog{kind="unread"} 0.0' in client.get("/metrics").text
