"""Hole 5 of issue 13: an alert belongs to the unit that owned its camera when it opened.

A county technician moves a camera with an open alert from one village to another. Later
events of that camera still join the open alert, and everything about it (the feed's scope,
who it is addressed to, its deadlines, a severity rise) follows the alert's owner, never the
camera's new unit: the old village keeps hearing of it and can act on it, the new village
hears nothing of an alert it cannot open. Once that alert is closed, a new fire of the camera
is a new alert, and it belongs to the camera's new unit. Real Redis, real HTTP (SSE), real
database, the engine's own stream.
"""

from __future__ import annotations

import time

import httpx

from api.services import Services
from config.redis_names import REJECTED_EVENTS_STREAM
from tests.alerting import FAR, SseListener, add_camera, drain, fast_retries, inject, live, one_fire, stored_events
from tests.conftest import Tree, wait_for


def _rejected(services: Services) -> list[str]:
    assert services.redis is not None
    return [data["reason"] for _, data in services.redis.xrange(REJECTED_EVENTS_STREAM)]


def _of(listener: SseListener, alert_id: int) -> list[str]:
    return [c["change"] for c in listener.changes if c["alert"]["id"] == alert_id]


def test_moved_camera_keeps_its_open_alert_with_the_village_that_owns_it(  # type: ignore[no-untyped-def]
        services: Services, tree: Tree, login) -> None:
    fast_retries(services)
    assert services.redis is not None
    with live(services) as base, httpx.Client(base_url=base) as http:
        admin = login("admin", tree.county)
        technician = login("technician", tree.county, "county-tech")
        a_op = login("operator", tree.village_a1, "a-op")
        b_op = login("operator", tree.village_b1, "b-op")
        gate = add_camera(http, admin, tree.village_a1, "gate")
        b_own = add_camera(http, admin, tree.village_b1, "b hill", FAR)
        a_feed = SseListener(f"{base}/api/v1/alerts/stream", a_op)
        b_feed = SseListener(f"{base}/api/v1/alerts/stream", b_op)
        a_feed.start()
        b_feed.start()
        wait_for(lambda: a_feed.connections >= 1 and b_feed.connections >= 1, 10)

        inject(services, gate, "smoke", 0.5)  # minor smoke in village A1
        wait_for(lambda: a_feed.changes, 10)
        alert = a_feed.changes[0]["alert"]
        assert alert["unit_id"] == tree.village_a1.id and alert["severity"] == "minor"
        opened = http.get(f"/api/v1/alerts/{alert['id']}", headers=a_op).json()

        # the attack: the camera goes to village B1 while its alert is open
        moved = http.patch(f"/api/v1/cameras/{gate}", json={"unit_id": tree.village_b1.id}, headers=technician)
        assert moved.status_code == 200, moved.text
        inject(services, gate, "smoke", 0.9)  # graver: "major" by the min_score rule
        inject(services, gate, "smoke", 0.6)
        wait_for(lambda: stored_events(services) + services.redis.xlen(REJECTED_EVENTS_STREAM) >= 3, 15)  # all taken
        assert _rejected(services) == []
        inject(services, b_own, "flame")  # B1's own: when it has reached B1, the above would have too
        wait_for(lambda: b_feed.changes, 10)
        time.sleep(0.5)
        wait_for(lambda: a_feed.changes[-1]["alert"]["event_count"] == 3, 10)
        changes = _of(a_feed, alert["id"])  # a batch's changes of one alert are one change
        assert changes[0] == "created" and "severity" in changes and set(changes) <= {"created", "severity", "event"}
        assert a_feed.changes[-1]["alert"]["severity"] == "major"
        assert all(c["alert"]["unit_id"] == tree.village_a1.id for c in a_feed.changes)
        assert [c["alert"]["camera_id"] for c in b_feed.changes] == [b_own], "B1 heard of A1's alert"
        now = http.get(f"/api/v1/alerts/{alert['id']}", headers=a_op)
        assert now.status_code == 200
        detail = now.json()
        assert detail["unit_id"] == detail["level_unit_id"] == tree.village_a1.id
        assert detail["severity"] == "major" and detail["event_count"] == 3
        assert tree.village_b1.id not in detail["addressed"] and tree.village_a1.id in detail["addressed"]
        assert detail["ack_due_at"] <= opened["ack_due_at"]  # graver: due sooner, by A1's level
        assert http.get(f"/api/v1/alerts/{alert['id']}", headers=b_op).status_code == 404
        assert http.post(f"/api/v1/alerts/{alert['id']}/acknowledge", headers=b_op).status_code == 404
        assert http.post(f"/api/v1/alerts/{alert['id']}/acknowledge", headers=a_op).status_code == 200
        resolved = http.post(f"/api/v1/alerts/{alert['id']}/resolve", data={"feedback": "put out"}, headers=a_op)
        assert resolved.status_code == 200, resolved.text

        # the alert is closed: the camera's next fire is a new alert of its new unit, B1
        b_seen = len(b_feed.changes)
        inject(services, gate, "smoke", 0.5)
        wait_for(lambda: len(b_feed.changes) > b_seen, 10)
        fresh = b_feed.changes[-1]["alert"]
        assert fresh["id"] != alert["id"] and fresh["unit_id"] == tree.village_b1.id
        assert fresh["camera_id"] == gate and fresh["code"].startswith(tree.village_b1.code)
        time.sleep(0.5)
        assert fresh["id"] not in {c["alert"]["id"] for c in a_feed.changes}
        assert http.get(f"/api/v1/alerts/{fresh['id']}", headers=a_op).status_code == 404
        a_feed.stop.set()
        b_feed.stop.set()


def test_escalation_of_an_alert_goes_up_its_owners_chain_after_the_camera_moved(  # type: ignore[no-untyped-def]
        services: Services, tree: Tree, login) -> None:
    """An alert of village A1 whose camera went to B1 escalates to town A, never to town B."""
    fast_retries(services)
    assert services.redis is not None
    with live(services) as base, httpx.Client(base_url=base) as http:
        admin = login("admin", tree.county)
        technician = login("technician", tree.county, "county-tech")
        a_op = login("operator", tree.village_a1, "a-op")
        town_b = login("operator", tree.town_b, "town-b-op")
        gate = add_camera(http, admin, tree.village_a1, "gate")
        inject(services, gate, "smoke", 0.5)
        wait_for(lambda: http.get("/api/v1/alerts", headers=a_op).json()["items"], 10)
        [alert] = http.get("/api/v1/alerts", headers=a_op).json()["items"]
        assert http.patch(f"/api/v1/cameras/{gate}", json={"unit_id": tree.village_b1.id},
                          headers=technician).status_code == 200
        inject(services, gate, "smoke", 0.95)
        wait_for(lambda: stored_events(services) + services.redis.xlen(REJECTED_EVENTS_STREAM) >= 2, 10)
        assert _rejected(services) == []
        assert http.get(f"/api/v1/alerts/{alert['id']}", headers=a_op).json()["severity"] == "major"
        up = http.post(f"/api/v1/alerts/{alert['id']}/escalate", json={"reason": "need the town"}, headers=a_op)
        assert up.status_code == 200, up.text
        assert up.json()["level_unit_id"] == tree.town_a.id
        assert tree.town_b.id not in up.json()["addressed"]
        assert http.get(f"/api/v1/alerts/{alert['id']}", headers=town_b).status_code == 404


def test_an_escalated_alert_still_works_after_its_village_is_moved_to_another_town(  # type: ignore[no-untyped-def]
        services: Services, tree: Tree, login, client) -> None:
    """The owner unit itself moves (with its subtree) while its alert stands at the old town:
    the alert starts over at its owner under the new chain instead of failing every action."""
    admin = login("admin", tree.county)
    a_op = login("operator", tree.village_a1, "a-op")
    _, engine, _ = one_fire(client, services, admin, tree.village_a1)
    [alert] = client.get("/api/v1/alerts", headers=a_op).json()["items"]
    assert client.post(f"/api/v1/alerts/{alert['id']}/escalate", json={"reason": "town"},
                       headers=a_op).json()["level_unit_id"] == tree.town_a.id
    moved = client.patch(f"/api/v1/units/{tree.village_a1.id}", json={"parent_id": tree.town_b.id}, headers=admin)
    assert moved.status_code == 200, moved.text
    acked = client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", headers=a_op)
    assert acked.status_code == 200, acked.text
    up = client.post(f"/api/v1/alerts/{alert['id']}/escalate", json={"reason": "the new town"}, headers=a_op)
    assert up.status_code == 200, up.text
    assert up.json()["level_unit_id"] == tree.town_b.id
    town_b = login("operator", tree.town_b, "town-b-op")
    assert client.get(f"/api/v1/alerts/{alert['id']}", headers=town_b).status_code == 200
    drain(engine)
