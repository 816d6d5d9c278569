"""The alert engine process (`lookout alert-engine`): wait for the database and Redis, then turn
events into alerts and escalate overdue ones (`alerts.engine`), deliver subscriptions
(`alerts.delivery`) and sign checkpoints of the audit chain (`registry.audit_checkpoints`),
until SIGTERM or SIGINT. Several may run: they share the events through a consumer group.

`api.cli` parses the command line and calls `run_alert_engine`; `lookout serve` starts one
beside the API unless told not to. What it reads from the settings is `alerts:` (`config.alerting`).
"""

from __future__ import annotations

import logging
import threading

from config.settings import Settings

log = logging.getLogger("lookout.alerts")


def run_alert_engine(settings: Settings) -> int:
    """One engine with its delivery and checkpoint threads until it is stopped; 0 (also when
    stopped while still waiting to start)."""
    import redis

    from alerts.delivery import Deliverer
    from alerts.engine import AlertEngine
    from alerts.policy import AlertPolicy
    from config.database import make_session_factory
    from config.dependencies import stop_on_signals
    from config.processes import on_stop_signals
    from registry.audit_checkpoints import Checkpointer
    from registry.connections import connect_when_ready
    from registry.credentials import CredentialCipher, secret_key

    stopping = stop_on_signals()
    ready = connect_when_ready(settings, "alert-engine", stopping)
    if ready is None:
        return 0
    engine, client = ready
    sessions = make_session_factory(engine)
    policy = AlertPolicy(settings.alerts)
    alerts = AlertEngine(sessions, client, policy)
    try:
        alerts.ensure_group()
    except (redis.ConnectionError, redis.TimeoutError) as exc:  # gone again: its loop makes the group (NOGROUP)
        log.warning("alert_group_not_created_yet", extra={"error": str(exc)[:300]})
    deliverer = Deliverer(sessions, client, policy, CredentialCipher(secret_key(settings)), security=settings.security)
    delivering = threading.Thread(target=deliverer.run, name="delivery", daemon=True)
    delivering.start()
    # signed checkpoints of the audit chain's head, outside the database (registry.audit_checkpoints)
    checkpoints = Checkpointer.from_settings(settings, sessions)
    checkpointing = threading.Thread(target=checkpoints.run, name="audit-checkpoints", daemon=True)
    checkpointing.start()

    def stop(*_: object) -> None:
        alerts.stop_event.set()
        deliverer.stop_event.set()
        checkpoints.stop_event.set()

    on_stop_signals(stop)  # called by a thread on SIGTERM or SIGINT, not inside the handler (config.processes)
    if stopping.is_set():  # a signal while it started
        stop()
    alerts.run()
    checkpoints.stop_event.set()
    checkpointing.join(15)
    delivering.join(15)
    deliverer.close()
    client.close()
    engine.dispose()
    return 0
