"""Acceptance 1, 4 and 5 of issue 6: an event reaches every channel (SSE, WebSocket, a signed
webhook, MQTT) routed to the right unit; a webhook receiver that was down gets everything, in
order per alert, and one that never comes back ends in the dead letters; a village operator
hears nothing of another village on any channel. Real Redis, real HTTP, real Mosquitto."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.services import Services
from tests.alerting import (
    FAR,
    MqttListener,
    Receiver,
    SseListener,
    add_camera,
    fast_retries,
    inject,
    listen,
    live,
    start_mosquitto,
)
from tests.conftest import Tree, free_port, wait_for


@pytest.fixture(scope="module")
def mqtt_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    process, port = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield port
    process.terminate()
    process.wait(10)


def _alerts(http: httpx.Client, headers: dict[str, str]) -> list[dict]:  # type: ignore[type-arg]
    return http.get("/api/v1/alerts", headers=headers).json()["items"]  # type: ignore[no-any-return]


def test_an_event_reaches_every_channel_routed_to_its_unit(services: Services, tree: Tree, login,  # type: ignore[no-untyped-def]
                                                            mqtt_port: int) -> None:
    fast_retries(services, mqtt_url=f"mqtt://127.0.0.1:{mqtt_port}")
    receiver = Receiver().start()
    broker = MqttListener(mqtt_port)
    with live(services) as base, httpx.Client(base_url=base) as http:
        admin = login("admin", tree.county)
        town = login("operator", tree.town_a, "town-op")
        village = login("operator", tree.village_a1, "village-op")
        gate = add_camera(http, admin, tree.village_a1, "gate")
        hook = http.post("/api/v1/subscriptions", headers=town, json={
            "name": "fire desk", "channel": "webhook", "url": receiver.url, "kinds": ["flame", "smoke"]})
        assert hook.status_code == 201, hook.text
        secret = hook.json()["secret"]
        assert http.post("/api/v1/subscriptions", headers=town, json={"name": "fire wall", "channel": "mqtt"}
                         ).status_code == 201
        sse, ws = listen(base, village, town)
        event = inject(services, gate, "flame", 0.8)
        wait_for(lambda: sse.changes and ws.changes and receiver.received and broker.messages, 15)
        for change in (sse.changes[0], ws.changes[0], receiver.bodies()[0], broker.messages[0][1]):
            assert change["change"] == "created"
            assert change["alert"]["unit_id"] == tree.village_a1.id and change["alert"]["camera_id"] == gate
        headers, body = receiver.received[0]
        expected = hmac.new(secret.encode(), headers["x-lookout-timestamp"].encode() + b"." + body, hashlib.sha256)
        assert headers["x-lookout-signature"] == "sha256=" + expected.hexdigest()
        assert abs(int(headers["x-lookout-timestamp"]) - time.time()) < 60
        assert broker.messages[0][0] == f"lookout/town-op/{tree.village_a1.code}/flame"
        [alert] = _alerts(http, village)
        assert http.get(f"/api/v1/alerts/{alert['id']}/events", headers=village).json()[0]["event_id"] == event.event_id

        sse.stop.set()  # the console goes away; meanwhile the alert is acknowledged and dispatched
        sse.join(5)
        http.post(f"/api/v1/alerts/{alert['id']}/acknowledge", headers=village)
        http.post(f"/api/v1/alerts/{alert['id']}/dispatch", json={"assignee": "李队长"}, headers=village)
        back = SseListener(f"{base}/api/v1/alerts/stream", village)
        back.last_id = sse.last_id  # resume from the last change it saw
        back.start()
        wait_for(lambda: len(back.changes) >= 2, 10)
        assert [c["change"] for c in back.changes] == ["acknowledged", "dispatched"]
        wait_for(lambda: len(ws.changes) >= 3 and len(receiver.received) >= 3, 10)
        assert [c["change"] for c in ws.changes] == ["created", "acknowledged", "dispatched"]
        back.stop.set()
        ws.stop.set()
    broker.close()
    receiver.stop()


def test_a_receiver_down_for_a_while_gets_everything_in_order(services: Services, tree: Tree,  # type: ignore[no-untyped-def]
                                                              login) -> None:
    fast_retries(services)
    receiver = Receiver(free_port())  # not listening yet
    with live(services) as base, httpx.Client(base_url=base) as http:
        admin = login("admin", tree.county)
        gate = add_camera(http, admin, tree.village_a1, "gate")
        hill = add_camera(http, admin, tree.village_a1, "hill", FAR)
        sub = http.post("/api/v1/subscriptions", headers=admin, json={
            "name": "county desk", "channel": "webhook", "url": receiver.url}).json()
        inject(services, gate)
        inject(services, hill)
        wait_for(lambda: len(_alerts(http, admin)) == 2, 10)
        for alert in _alerts(http, admin):
            http.post(f"/api/v1/alerts/{alert['id']}/acknowledge", headers=admin)
        first = min(a["id"] for a in _alerts(http, admin))
        http.post(f"/api/v1/alerts/{first}/dispatch", json={"assignee": "消防队"}, headers=admin)

        def tried_twice() -> bool:
            pending = http.get(f"/api/v1/subscriptions/{sub['id']}/deliveries", headers=admin).json()
            return len(pending) == 5 and max(d["attempts"] for d in pending) >= 2

        wait_for(tried_twice, 15)
        assert receiver.received == []
        receiver.start()  # it comes back
        wait_for(lambda: len(receiver.received) == 5, 20)
        by_alert: dict[int, list[dict]] = {}  # type: ignore[type-arg]
        for change in receiver.bodies():
            by_alert.setdefault(change["alert"]["id"], []).append(change)
        assert [c["change"] for c in by_alert[first]] == ["created", "acknowledged", "dispatched"]
        for changes in by_alert.values():
            ids = [c["change_id"] for c in changes]
            assert ids == sorted(ids)
        states = {d["state"] for d in http.get(f"/api/v1/subscriptions/{sub['id']}/deliveries", headers=admin).json()}
        assert states == {"delivered"}
    receiver.stop()


def test_a_receiver_that_never_comes_back_ends_in_the_dead_letters(services: Services, tree: Tree,  # type: ignore[no-untyped-def]
                                                                   login) -> None:
    fast_retries(services, give_up_hours=1.5 / 3600)
    receiver = Receiver(free_port())
    with live(services) as base, httpx.Client(base_url=base) as http:
        admin = login("admin", tree.county)
        gate = add_camera(http, admin, tree.village_a1, "gate")
        sub = http.post("/api/v1/subscriptions", headers=admin, json={
            "name": "gone", "channel": "webhook", "url": receiver.url}).json()
        inject(services, gate)
        url = f"/api/v1/subscriptions/{sub['id']}/deliveries"
        wait_for(lambda: len(http.get(url, params={"state": "dead"}, headers=admin).json()) == 1, 15)
        [dead] = http.get(url, params={"state": "dead"}, headers=admin).json()
        assert dead["attempts"] >= 2 and "ConnectError" in dead["last_error"]
        receiver.start()  # an operator fixes the receiver and replays the dead letters
        replayed = http.post(f"/api/v1/subscriptions/{sub['id']}/dead-letters/replay", headers=admin).json()
        assert replayed == {"requeued": 1}
        wait_for(lambda: len(receiver.received) == 1, 10)
        assert receiver.bodies()[0]["change"] == "created"
    receiver.stop()


def test_village_a_hears_nothing_of_village_b_on_any_channel(services: Services, tree: Tree, login,  # type: ignore[no-untyped-def]
                                                             mqtt_port: int, tmp_path: Path) -> None:
    fast_retries(services, mqtt_url=f"mqtt://127.0.0.1:{mqtt_port}")
    receiver = Receiver().start()
    broker = MqttListener(mqtt_port)
    with live(services) as base, httpx.Client(base_url=base) as http:
        admin = login("admin", tree.county)
        a_op = login("operator", tree.village_a1, "a-op")
        a_cam = add_camera(http, admin, tree.village_a1, "a gate")
        b_cams = [add_camera(http, admin, tree.village_b1, f"b{i}", FAR) for i in range(3)]
        assert http.post("/api/v1/subscriptions", headers=a_op, json={
            "name": "peek", "channel": "webhook", "url": receiver.url, "unit_id": tree.village_b1.id}
                         ).status_code == 404
        assert http.post("/api/v1/subscriptions", headers=a_op, json={
            "name": "mine", "channel": "webhook", "url": receiver.url}).status_code == 201
        assert http.post("/api/v1/subscriptions", headers=a_op, json={"name": "mine", "channel": "mqtt"}
                         ).status_code == 201
        sse, ws = listen(base, a_op, a_op)
        for cam in b_cams:
            inject(services, cam, "flame")
            inject(services, cam, "camera_offline")
        wait_for(lambda: len(_alerts(http, admin)) == 4, 10)  # one fire incident, three offline cameras
        b_alert = _alerts(http, admin)[0]["id"]
        http.post(f"/api/v1/alerts/{b_alert}/acknowledge", headers=admin)
        inject(services, a_cam, "smoke")  # the last one, A's own: when it has arrived, B's would have too
        mine = f"lookout/a-op/{tree.village_a1.code}/smoke"
        wait_for(lambda: sse.changes and ws.changes and receiver.received
                 and any(topic == mine for topic, _ in broker.messages), 15)
        time.sleep(0.5)
        for changes in (sse.changes, ws.changes, receiver.bodies()):
            assert [c["alert"]["unit_id"] for c in changes] == [tree.village_a1.id]
        assert [t for t, _ in broker.messages if t.startswith("lookout/a-op/")] == [mine]
        assert http.get(f"/api/v1/alerts/{b_alert}", headers=a_op).status_code == 404
        assert http.post(f"/api/v1/alerts/{b_alert}/false_alarm", json={"reason": "x"}, headers=a_op).status_code == 404
        assert [a["unit_id"] for a in _alerts(http, a_op)] == [tree.village_a1.id]
        sse.stop.set()
        ws.stop.set()
    broker.close()
    receiver.stop()
