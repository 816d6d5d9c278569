"""Helpers of the alert tests: cameras placed on the map, events put on the real stream, and an
alert engine driven step by step."""

from __future__ import annotations

import time
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.alerting.engine import AlertEngine
from api.alerting.model import AlertEvent
from api.alerting.policy import AlertPolicy
from api.services import Services
from config.alerting import AlertSettings
from detectors.events import EVENTS_STREAM, Event
from ingest.units import Unit
from tests.conftest import camera_body

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


def drain(engine: AlertEngine) -> None:
    """Let the engine take everything on the stream."""
    while engine.step(block_ms=20):
        pass


def stored_events(services: Services) -> int:
    with services.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(AlertEvent)) or 0)
