"""A real ingest worker with a detection stage over a test registry, for the tests that watch
what a worker raises on `lookout:events`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from api.services import Services
from detectors.camera_health import HealthRules
from ingest.camera_runner import CameraRunner, StreamSettings
from ingest.detection import DetectionStage
from ingest.outbox import DEFAULT_MAX_EVENTS
from ingest.worker import IngestWorker
from tests.scenes import ASSETS


def make_runner(services: Services, client: redis.Redis, stage: DetectionStage | None,
                outbox_dir: Path | None = None, outbox_max_events: int = DEFAULT_MAX_EVENTS) -> CameraRunner:
    """The runner `detection_worker` uses: one sample per second at 640×360, offline after 3 s of
    silence; `file:` cameras may play from the data folder and tests/assets."""
    return CameraRunner(services.sessions, services.registry.cipher, client,
                        StreamSettings(size=(640, 360), interval=1.0, read_timeout=3.0, open_timeout=3.0,
                                       media_dirs=(services.settings.data_dir, ASSETS),
                                       outbox_dir=outbox_dir, outbox_max_events=outbox_max_events),
                        HealthRules(offline_after=3.0, online_hold=1.0), detection=stage)


@contextmanager
def run_worker(services: Services, client: redis.Redis, runner: CameraRunner) -> Iterator[IngestWorker]:
    """A worker taking every enabled camera of `services`' registry through `runner`, until the
    block ends (then the runner is stopped: its outbox let go)."""
    worker = IngestWorker(services.sessions, client, ttl=6, step_seconds=1, tick_seconds=1.0, **runner.hooks())
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop_event.set()
        thread.join(20)
        runner.stop()


@contextmanager
def detection_worker(services: Services, client: redis.Redis, stage: DetectionStage) -> Iterator[IngestWorker]:
    """A worker taking every enabled camera of `services`' registry, one sample per second at
    640×360, until the block ends."""
    with run_worker(services, client, make_runner(services, client, stage)) as worker:
        yield worker
