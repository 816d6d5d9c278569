"""Helpers of the alert tests: cameras placed on the map, events put on the real stream, an alert
engine driven step by step, and the whole alert side live (API on a real port, engine, deliverer)
with a private Mosquitto."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from alerts.delivery import Deliverer
from alerts.engine import AlertEngine
from alerts.model import AlertEvent
from alerts.policy import AlertPolicy
from api.app import create_app
from api.services import Services
from config.alerting import AlertSettings
from config.redis_names import EVENTS_STREAM
from detectors.events import Event
from registry.units import Unit
from tests.conftest import camera_body, free_port, wait_for

#: 示范县 square, and points about 100 m and 5 km from it
SQUARE = (30.2500, 120.1600)
NEAR = (30.2509, 120.1600)
FAR = (30.2950, 120.1600)


def add_camera(client: TestClient, headers: dict[str, str], unit: Unit, name: str,
               at: tuple[float, float] | None = SQUARE, tags: list[str] | None = None) -> int:
    body = camera_body(unit, name, tags=tags or [])
    if at is not None:
        body |= {"latitude": at[0], "longitude": at[1]}
    response = client.post("/api/v1/cameras", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def inject(services: Services, camera_id: int, kind: str = "flame", score: float = 0.7,
           at: float | None = None, **evidence: object) -> Event:
    event = Event(camera_id, kind, time.time() if at is None else at, score, dict(evidence),
                  event_id=uuid.uuid4().hex)
    assert services.redis is not None
    services.redis.xadd(EVENTS_STREAM, event.fields())
    return event


def engine_for(services: Services, settings: AlertSettings | None = None, consumer: str = "test") -> AlertEngine:
    assert services.redis is not None
    engine = AlertEngine(services.sessions, services.redis, AlertPolicy(settings or services.settings.alerts),
                         consumer=consumer)
    engine.ensure_group()
    return engine


def one_fire(client: TestClient, services: Services, headers: dict[str, str], unit: Unit
             ) -> tuple[int, AlertEngine, Event]:
    """A camera `gate` in `unit`, an engine, and one flame event of it turned into an alert."""
    gate = add_camera(client, headers, unit, "gate")
    engine = engine_for(services)
    event = inject(services, gate)
    drain(engine)
    return gate, engine, event


def drain(engine: AlertEngine) -> None:
    """Let the engine take everything on the stream."""
    while engine.step(block_ms=20):
        pass


def stored_events(services: Services) -> int:
    with services.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(AlertEvent)) or 0)


# -- a whole alert side, live: API over real HTTP, the engine, the deliverer -----------------
def start_mosquitto(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A private Mosquitto broker on a free loopback port."""
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    wait_for(listening, 10)
    return process, port


def fast_retries(services: Services, **changes: object) -> None:
    """Alert settings for tests: deliveries retried after 0.2 s, at most 1 s apart; and webhooks
    may reach 127.0.0.1, where the tests' receivers listen (as an operator opens it for a relay
    on the same machine: README "Security")."""
    alerts = services.settings.alerts.model_copy(update={"retry_first_seconds": 0.2, "retry_max_seconds": 1.0,
                                                         "sweep_seconds": 0.2, **changes})
    security = services.settings.security.model_copy(update={"webhook_allow_networks": ["127.0.0.1/32"]})
    services.settings = services.settings.model_copy(update={"alerts": alerts, "security": security})
    services.alert_policy = AlertPolicy(alerts)


@contextmanager
def live(services: Services) -> Iterator[str]:
    """The API on a real port (uvicorn), an alert engine and a deliverer, in this process; the
    API's base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_config=None,
                                           access_log=False))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    engine = engine_for(services, services.alert_policy.settings, consumer="live")
    engine.claim_idle_ms = 60_000
    deliverer = Deliverer(services.sessions, services.redis, services.alert_policy, services.registry.cipher,
                          security=services.settings.security)
    threads = [threading.Thread(target=engine.run, kwargs={"block_ms": 100}, daemon=True),
               threading.Thread(target=deliverer.run, daemon=True)]
    for thread in threads:
        thread.start()
    wait_for(lambda: server.started, 10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        engine.stop_event.set()
        deliverer.stop_event.set()
        server.should_exit = True
        for thread in threads:
            thread.join(10)
        deliverer.close()
        serving.join(10)


# -- the channels, as subscribers see them ---------------------------------------------------
class Receiver:
    """A real HTTP server that records every webhook POST (headers, body) and answers 204."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def bodies(self) -> list[dict]:  # type: ignore[type-arg]
        return [json.loads(body) for _, body in self.received]


class SseListener(threading.Thread):
    """Follows `GET /alerts/stream`, reconnecting with Last-Event-ID whenever it is cut."""

    def __init__(self, url: str, headers: dict[str, str], **params: object) -> None:
        super().__init__(daemon=True)
        self.url, self.headers, self.params = url, headers, params
        self.changes: list[dict] = []  # type: ignore[type-arg]
        self.last_id: str | None = None
        self.connections = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            headers = dict(self.headers) | ({"Last-Event-ID": self.last_id} if self.last_id else {})
            try:
                with httpx.stream("GET", self.url, headers=headers, params=self.params,
                                  timeout=httpx.Timeout(5, read=1.0)) as response:
                    self.connections += 1
                    event_id = None
                    for line in response.iter_lines():
                        if line.startswith("id: "):
                            event_id = line[4:]
                        elif line.startswith("data: "):
                            self.changes.append(json.loads(line[6:]))
                            self.last_id = event_id
                        if self.stop.is_set():
                            return
            except httpx.HTTPError:
                time.sleep(0.1)


class WsListener(threading.Thread):
    """Follows `/alerts/ws` with the token in the query, as a browser would."""

    def __init__(self, url: str, token: str, **params: object) -> None:
        super().__init__(daemon=True)
        query = "&".join(f"{k}={v}" for k, v in {"access_token": token, **params}.items())
        self.url = url.replace("http://", "ws://") + "?" + query
        self.changes: list[dict] = []  # type: ignore[type-arg]
        self.connected = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        with connect(self.url) as socket_:
            self.connected.set()
            while not self.stop.is_set():
                try:
                    self.changes.append(json.loads(socket_.recv(timeout=0.5)))
                except TimeoutError:
                    continue
                except ConnectionClosed:
                    return


class MqttListener:
    """A real MQTT client subscribed to everything under `lookout/`."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict]] = []  # type: ignore[type-arg]
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe("lookout/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, json.loads(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def listen(base: str, sse_headers: dict[str, str], ws_headers: dict[str, str]) -> tuple[SseListener, WsListener]:
    """An SSE and a WebSocket listener on the live feed, both connected."""
    sse = SseListener(f"{base}/api/v1/alerts/stream", sse_headers)
    ws = WsListener(f"{base}/api/v1/alerts/ws", token_of(ws_headers))
    sse.start()
    ws.start()
    wait_for(lambda: sse.connections >= 1 and ws.connected.is_set(), 10)
    return sse, ws


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].split(" ", 1)[1]
