"""Every Redis key, key prefix, stream and consumer group name Lookout uses, in one place.

Redis is the meeting point of the processes (workers, alert engines, API processes), so a
name written by one and read by another must be the same string in both; keeping them all
here shows at a glance what lives in a deployment's Redis and who shares what. Only the names
live here: what each holds is described by the module that writes it (named beside each).
`detectors/` imports nothing of the project, so it does not use these names; its events are
written here by the worker and read by the alert engine.
"""

from __future__ import annotations

#: Stream of every event the workers raise (`detectors.events.Event.fields()`): written through
#: the worker's outbox (`ingest.outbox`), read by the alert engines (`alerts.engine`).
EVENTS_STREAM = "lookout:events"
#: Consumer group of the alert engines on `EVENTS_STREAM`: they share its entries.
ALERT_ENGINE_GROUP = "alert-engine"
#: Stream of the events the alert engine set aside, each with the reason (`alerts.engine`).
REJECTED_EVENTS_STREAM = "lookout:events:rejected"
#: Stream whose entries carry the last alert change id: the alert feed's doorbell (`alerts.feed`),
#: rung by whoever commits changes, waited on by every API process's feed hub (`api.feed_hub`).
ALERTS_DOORBELL = "lookout:alerts"
#: Stream of camera changes, written by the registry (`registry.registry_feed`), read by the
#: workers (`ingest.worker`).
REGISTRY_STREAM = "lookout:registry"
#: Sorted set of the live workers' heartbeats: worker id, score = time (`ingest.assignment`).
WORKERS_SET = "lookout:workers"
#: + a camera id: the lease of the worker that reads the camera (`ingest.assignment`).
LEASE_PREFIX = "lookout:lease:"
#: Hash of camera id → the stream figures its worker publishes as JSON, read by the API
#: (`ingest.stream_figures`).
STREAM_FIGURES_HASH = "lookout:stream_figures"
#: + a username in lower case: its sign-in tries (`api.login_throttle`).
LOGIN_USER_PREFIX = "lookout:login:user:"
#: + a client network: its sign-in tries (`api.login_throttle`).
LOGIN_ADDRESS_PREFIX = "lookout:login:address:"
