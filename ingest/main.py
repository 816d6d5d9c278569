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
    from config.database import make_engine, make_session_factory
    from config.dependencies import stop_on_signals, wait_for_dependencies
    from config.redis_server import connect, deployment_url
    from ingest.camera_runner import CameraRunner, StreamSettings
    from ingest.detection import load_stage
    from ingest.worker import IngestWorker, new_worker_id
    from registry.credentials import CredentialCipher, secret_key

    stop = stop_on_signals()
    url = deployment_url(settings.redis_url, settings.data_dir, "lookout worker")
    from registry.migrate import upgrade  # alembic logs as it loads: not for a start refused above

    engine = make_engine(settings.resolved_database_url)
    if not wait_for_dependencies(engine, url, stop, settings.dependency_retry_seconds, command="worker",
                                 migrate=upgrade):
        engine.dispose()
        return 0
    sessions = make_session_factory(engine)
    client = connect(url)
    worker_id = new_worker_id()
    section = settings.worker
    detection = load_stage(settings.model_cache_dir, section.detectors, section.snapshot_folder(settings.data_dir),
                           precision=section.model_precision)
    runner = CameraRunner(sessions, CredentialCipher(secret_key(settings)), client,
                          StreamSettings.from_settings(settings), worker_id=worker_id, detection=detection)
    worker = IngestWorker(sessions, client, worker_id, ttl=section.ttl_seconds, step_seconds=section.step_seconds,
                          on_assign=runner.assign, on_release=runner.release, on_change=runner.restart,
                          tick=runner.tick, stop_event=stop)
    worker.run()
    runner.stop()
    engine.dispose()
    return 0
