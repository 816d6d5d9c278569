"""The alert feed: every change of every alert, numbered without gaps in commit order.

(One kind of change is not announced: the outages of a flapping camera between its alert's
"created", "flapping" and "resolved" change the alert quietly, so no subscriber is paged once
per outage; see `alerts.outages`.)

Writers add their changes in the same transaction as the alert itself (so a crash never
leaves an alert changed but unannounced, nor announced but not changed), then ring the
doorbell: an entry on the Redis stream `lookout:alerts` carrying the last change id, which
wakes every reader at once. Readers (the console's SSE and WebSocket, webhooks, MQTT) go by
change id, so a reader that was away resumes exactly where it left off; a lost doorbell only
delays them until their next poll.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import redis
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from alerts.counters import take
from alerts.model import Alert, AlertChange
from config.database import utcnow
from config.redis_names import ALERTS_DOORBELL
from registry.audit import jsonable

FEED_COUNTER = "alert_feed"
log = logging.getLogger("lookout.alerts")


@dataclass(frozen=True, slots=True)
class Change:
    """One change to announce: the alert after it, what happened, who did it."""

    alert: Alert
    change: str
    actor: str
    unit_path: str


def append(session: Session, changes: list[Change]) -> int:
    """Write `changes` to the feed inside the caller's transaction; the last id (0: none).

    Take this after every alert row the transaction updates (row locks first, then the feed,
    then the audit head: every writer in that order, so none waits on another in a circle)."""
    if not changes:
        return 0
    session.flush()  # ids and bumped versions
    last = take(session, FEED_COUNTER, len(changes))
    at = utcnow()
    rows = [{"id": last - len(changes) + 1 + i, "alert_id": c.alert.id, "version": c.alert.version,
             "change": c.change, "at": at, "actor": c.actor, "unit_path": c.unit_path,
             "addressed": list(c.alert.addressed), "kind": c.alert.kind, "severity_rank": c.alert.severity_rank,
             "alert": jsonable(c.alert.public())} for i, c in enumerate(changes)]
    session.execute(insert(AlertChange), rows)
    return last


def ring(client: redis.Redis | None, last_id: int) -> None:
    """Wake the feed's readers after a commit; failures are only logged (readers poll)."""
    if client is None or not last_id:
        return
    try:
        client.xadd(ALERTS_DOORBELL, {"last": last_id}, maxlen=10_000, approximate=True)
    except redis.RedisError as exc:
        log.warning("alert_doorbell_failed", extra={"change_id": last_id, "error": str(exc)})


def wait_for_ring(client: redis.Redis | None, seen: str, seconds: float, idle: threading.Event) -> str:
    """Block until the doorbell rings after entry `seen` or `seconds` pass (without Redis: just
    wait on `idle`); the last entry seen. Readers then read the feed itself by change id."""
    if client is None:
        idle.wait(seconds)
        return seen
    reply = client.xread({ALERTS_DOORBELL: seen}, count=100, block=int(seconds * 1000))
    return reply[0][1][-1][0] if reply else seen


def changes_after(session: Session, after: int, limit: int = 500) -> list[AlertChange]:
    query = select(AlertChange).where(AlertChange.id > after).order_by(AlertChange.id).limit(limit)
    return list(session.scalars(query))


def last_change_id(session: Session) -> int:
    return int(session.scalar(select(func.coalesce(func.max(AlertChange.id), 0))) or 0)
