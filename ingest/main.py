"""The worker process (`lookout worker`): wait for the database and Redis, then take a share of
the cameras through Redis leases (`ingest.worker`) and run their readers, video and detection
(`ingest.camera_runner`) until SIGTERM or SIGINT.

`api.cli` parses the command line and calls `run_worker`; `lookout serve` starts this process
once per core. What it reads from the settings is the `worker:` section (`config.worker`).
"""

from __future__ import annotations

from config.settings import Settings


def run_worker(settings: Settings) -> int:
    """One worker until it is stopped; 0 (also when stopped while still waiting to start)."""
    from config.processes import limit_malloc_arenas

    limit_malloc_arenas()  # before any reader thread starts
    from config.database import make_session_factory
    from config.dependencies import stop_on_signals
    from ingest.camera_runner import CameraRunner, StreamSettings
    from ingest.detection import load_stage
    from ingest.worker import IngestWorker, new_worker_id
    from registry.connections import connect_when_ready
    from registry.credentials import CredentialCipher, secret_key

    stop = stop_on_signals()
    ready = connect_when_ready(settings, "worker", stop)
    if ready is None:
        return 0
    engine, client = ready
    sessions = make_session_factory(engine)
    worker_id = new_worker_id()
    section = settings.worker
    detection = load_stage(settings.model_cache_dir, section.detectors, section.snapshot_folder(settings.data_dir),
                           precision=section.model_precision, crowd_interval=section.crowd_interval_seconds, crowd_background=True)
    runner = CameraRunner(sessions, CredentialCipher(secret_key(settings)), client,
                          StreamSettings.from_settings(settings), worker_id=worker_id, detection=detection)
    worker = IngestWorker(sessions, client, worker_id, ttl=section.ttl_seconds, step_seconds=section.step_seconds,
                          stop_event=stop, **runner.hooks())
    worker.run()
    runner.stop()
    engine.dispose()
    return 0
