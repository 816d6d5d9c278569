"""Pushing the feed to subscriptions: webhooks (signed JSON) and MQTT (topic per unit and kind).

Two steps, both safe to run in several processes at once:
- fan-out reads the feed after its cursor (a counter row, so one process at a time) and writes
  a `Delivery` row for every subscription that takes each change, then moves the cursor, in
  one transaction: a change is queued for every subscriber exactly once, crash or not;
- sending leases due deliveries, the oldest pending one of each (subscription, alert) only, so
  each alert's changes arrive in order; a failure is tried again after a doubling wait until
  `give_up_hours` have passed, and then the delivery is a dead letter, listed and replayable
  through the API.

A webhook body is the change as the live feed sends it. Its headers carry the Unix time and
an HMAC-SHA256 over "<time>.<body>" with the subscription's secret, so a receiver can check
that the body is Lookout's, unchanged, and fresh.

Webhooks go only where `alerts.destinations` allows, checked on the addresses the host
resolves to at each send and connected to exactly those; redirects are not followed, and a
failed try records the status or a short reason, never the receiver's answer. The MQTT broker
is the operator's (`alerts.mqtt_url`); users choose only topic prefixes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
import redis
from sqlalchemy import Index, Integer, String, Text, and_, delete, exists, insert, select, update
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column, sessionmaker

from alerts.counters import move_to, take
from alerts.destinations import DestinationRefused, Destinations, checked_client, failure_reason, status_reason
from alerts.feed import changes_after, wait_for_ring
from alerts.feed_items import FeedFilter, FeedItem
from alerts.model import AlertChange
from alerts.policy import AlertPolicy
from alerts.subscriptions import Channel, Route, Subscription
from config.database import Base, UTCDateTime, utcnow
from config.security import SecuritySettings
from registry.credentials import CredentialCipher
from registry.units import Unit
from registry.users import User

FANOUT_CURSOR = "delivery_cursor"
LEASE_SECONDS = 60.0
PRUNE_SECONDS = 3600.0
log = logging.getLogger("lookout.delivery")


class DeliveryState:
    pending = "pending"
    delivered = "delivered"
    dead = "dead"


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "state", "next_attempt_at"),
                      Index("ix_deliveries_order", "subscription_id", "alert_id", "state"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(Integer)
    alert_id: Mapped[int] = mapped_column(Integer, index=True)
    change_id: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    topic: Mapped[str | None] = mapped_column(String(400))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    leased_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def public(self) -> dict[str, object]:
        return {"id": self.id, "subscription_id": self.subscription_id, "alert_id": self.alert_id,
                "change_id": self.change_id, "channel": self.channel, "topic": self.topic, "state": self.state,
                "attempts": self.attempts, "next_attempt_at": self.next_attempt_at, "last_error": self.last_error,
                "created_at": self.created_at, "delivered_at": self.delivered_at}


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Lookout-Signature` value: "sha256=" + HMAC-SHA256(secret, "<timestamp>." + body)."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def load_routes(session: Session) -> list[Route]:
    """Every active subscription with its unit's path and its owner's current scope."""
    owner_unit = aliased(Unit)
    rows = session.execute(
        select(Subscription, Unit.path, owner_unit.path)
        .join(Unit, Unit.id == Subscription.unit_id)
        .join(User, User.id == Subscription.user_id)
        .join(owner_unit, owner_unit.id == User.unit_id)
        .where(Subscription.active.is_(True), User.active.is_(True)))
    return [Route(s.id, s.channel, FeedFilter(path, s.unit_id, frozenset(s.kinds), s.min_severity_rank,
                                              s.addressed_only), scope,
                  None if s.hours_start is None or s.hours_end is None else (s.hours_start, s.hours_end))
            for s, path, scope in rows]


def fan_out(session: Session, policy: AlertPolicy, limit: int = 500) -> int:
    """Queue the feed's next changes for every subscription that takes them; how many changes
    were read. One transaction: the cursor moves with the deliveries it queued."""
    cursor = take(session, FANOUT_CURSOR, 0)
    changes = changes_after(session, cursor, limit)
    if not changes:
        session.rollback()
        return 0
    routes = load_routes(session)
    prefixes = dict(session.execute(select(Subscription.id, Subscription.topic_prefix)
                                    .where(Subscription.channel == Channel.mqtt.value)).all())
    codes = dict(session.execute(select(Unit.id, Unit.code).where(
        Unit.id.in_({c.alert["unit_id"] for c in changes}))).all()) if prefixes else {}
    now = utcnow()
    rows = []
    for change in changes:
        item = FeedItem.of(change)
        local = change.at.astimezone(policy.zone)
        minute = local.hour * 60 + local.minute
        for route in routes:
            if not route.takes(item, minute):
                continue
            topic = None
            if route.channel == Channel.mqtt.value:
                topic = f"{prefixes[route.subscription_id]}/{codes[change.alert['unit_id']]}/{change.kind}"
            rows.append({"subscription_id": route.subscription_id, "alert_id": change.alert_id,
                         "change_id": change.id, "channel": route.channel, "topic": topic, "body": item.data,
                         "state": DeliveryState.pending, "attempts": 0, "next_attempt_at": now, "created_at": now})
    if rows:
        session.execute(insert(Delivery), rows)
    move_to(session, FANOUT_CURSOR, changes[-1].id)
    session.commit()
    return len(changes)


def prune(session: Session, before: datetime) -> tuple[int, int]:
    """Drop feed changes and finished deliveries (delivered or dead) older than `before`;
    how many of each. Alerts, their events and the audit log are never pruned."""
    changes = session.execute(delete(AlertChange).where(AlertChange.at < before)).rowcount
    done = session.execute(delete(Delivery).where(Delivery.state.in_([DeliveryState.delivered, DeliveryState.dead]),
                                                  Delivery.created_at < before)).rowcount
    session.commit()
    return int(changes or 0), int(done or 0)  # type: ignore[arg-type]


def retry_delay(attempts: int, first: float, most: float) -> float:
    """Seconds before try `attempts + 1`: doubling from `first`, never above `most`."""
    return float(min(most, first * 2 ** max(0, attempts - 1)))


class MqttPublisher:
    """One connection to the broker, opened on first use and again after it fails."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 1883
        self.username, self.password = parts.username, parts.password
        self.tls = parts.scheme == "mqtts"
        self.client = None
        self.lock = threading.Lock()

    def _connect(self):  # type: ignore[no-untyped-def]
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"lookout-{uuid.uuid4().hex[:12]}")
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set()
        client.connect(self.host, self.port, keepalive=30)
        client.loop_start()
        return client

    def publish(self, topic: str, body: str) -> None:
        with self.lock:
            if self.client is None:
                self.client = self._connect()
            info = self.client.publish(topic, body.encode(), qos=1)
        info.wait_for_publish(timeout=5)
        if not info.is_published():
            self.close()
            raise ConnectionError(f"broker {self.host}:{self.port} did not confirm the message")

    def close(self) -> None:
        with self.lock:
            client, self.client = self.client, None
        if client is not None:
            client.loop_stop()
            client.disconnect()


class Deliverer:
    """Fan-out and sending in a loop, woken by the feed's doorbell."""

    def __init__(self, sessions: sessionmaker[Session], client: redis.Redis | None, policy: AlertPolicy,
                 cipher: CredentialCipher, senders: int = 8, security: SecuritySettings | None = None) -> None:
        """`security`: where webhooks may go (`settings.security`); without it, the defaults
        (private networks yes; this machine, link-local, multicast no)."""
        self.sessions, self.redis, self.policy, self.cipher = sessions, client, policy, cipher
        self.settings = policy.settings
        self.name = f"deliverer-{uuid.uuid4().hex[:12]}"
        self.destinations = Destinations.from_settings(security or SecuritySettings())
        self.http = checked_client(self.destinations, httpx.Timeout(10.0, connect=5.0))
        self.mqtt = MqttPublisher(self.settings.mqtt_url) if self.settings.mqtt_url else None
        self.pool = ThreadPoolExecutor(senders, thread_name_prefix="deliver")
        self.stop_event = threading.Event()

    def run(self) -> None:
        doorbell = "$"
        pruned = 0.0
        while not self.stop_event.is_set():
            try:
                if time.monotonic() - pruned > PRUNE_SECONDS:
                    pruned = time.monotonic()
                    with self.sessions() as session:
                        gone = prune(session, utcnow() - timedelta(days=self.settings.feed_retention_days))
                    if any(gone):
                        log.info("delivery_pruned", extra={"changes": gone[0], "deliveries": gone[1]})
                while fan_out_in(self.sessions, self.policy):
                    pass
                sent = self.send_due()
                if sent:
                    continue
                doorbell = wait_for_ring(self.redis, doorbell, 0.5, self.stop_event)
            except Exception as exc:  # noqa: BLE001 - delivery must outlive a database or Redis outage
                log.warning("delivery_waiting", extra={"error": str(exc)[:300]})
                self.stop_event.wait(1.0)

    def close(self) -> None:
        self.stop_event.set()
        self.pool.shutdown(wait=True)
        self.http.close()
        if self.mqtt is not None:
            self.mqtt.close()

    def send_due(self, limit: int = 100) -> int:
        """Lease the deliveries that are due (each alert's oldest pending one per subscription),
        send them side by side, record how each went; how many were tried."""
        batch = self._lease(limit)
        if not batch:
            return 0
        secrets = self._secrets({d.subscription_id for d in batch})
        outcomes = list(self.pool.map(lambda d: self._send(d, secrets), batch))
        now = utcnow()
        give_up = timedelta(hours=self.settings.give_up_hours)
        with self.sessions() as session:
            for delivery, error in zip(batch, outcomes):
                values: dict[str, object] = {"lease_until": None, "leased_by": None, "attempts": delivery.attempts + 1}
                if error is None:
                    values |= {"state": DeliveryState.delivered, "delivered_at": now, "last_error": None}
                elif now - delivery.created_at >= give_up:
                    values |= {"state": DeliveryState.dead, "last_error": error[:500]}
                    log.warning("delivery_dead", extra={"delivery_id": delivery.id, "alert_id": delivery.alert_id,
                                                        "subscription_id": delivery.subscription_id, "error": error})
                else:
                    wait = retry_delay(delivery.attempts + 1, self.settings.retry_first_seconds,
                                       self.settings.retry_max_seconds)
                    values |= {"last_error": error[:500], "next_attempt_at": now + timedelta(seconds=wait)}
                session.execute(update(Delivery).where(Delivery.id == delivery.id, Delivery.leased_by == self.name)
                                .values(**values))
            session.commit()
        return len(batch)

    def _lease(self, limit: int) -> list[Delivery]:
        now = utcnow()
        earlier = aliased(Delivery)
        blocked = exists().where(and_(earlier.subscription_id == Delivery.subscription_id,
                                      earlier.alert_id == Delivery.alert_id,
                                      earlier.state == DeliveryState.pending, earlier.id < Delivery.id))
        free = (Delivery.lease_until.is_(None)) | (Delivery.lease_until < now)
        with self.sessions() as session:
            ids = list(session.scalars(
                select(Delivery.id).where(Delivery.state == DeliveryState.pending, Delivery.next_attempt_at <= now,
                                          free, ~blocked).order_by(Delivery.id).limit(limit)))
            if not ids:
                return []
            until = now + timedelta(seconds=LEASE_SECONDS)
            session.execute(update(Delivery).where(Delivery.id.in_(ids), Delivery.state == DeliveryState.pending, free)
                            .values(lease_until=until, leased_by=self.name))
            session.commit()
            return list(session.scalars(select(Delivery).where(Delivery.id.in_(ids), Delivery.leased_by == self.name)
                                        .order_by(Delivery.id)))

    def _secrets(self, ids: set[int]) -> dict[int, tuple[str | None, str | None]]:
        with self.sessions() as session:
            rows = session.execute(select(Subscription.id, Subscription.url, Subscription.secret_sealed)
                                   .where(Subscription.id.in_(ids))).all()
        return {sid: (url, self.cipher.open_text(sealed, subscription_id=sid) if sealed else None)
                for sid, url, sealed in rows}

    def _send(self, delivery: Delivery, secrets: dict[int, tuple[str | None, str | None]]) -> str | None:
        """None when the receiver took it; else why not, in a few words of our own (a status,
        "connection refused", a refused address): never what the receiver sent back."""
        if delivery.channel == Channel.mqtt.value:
            if self.mqtt is None:
                return "no MQTT broker configured (alerts.mqtt_url)"
            try:
                self.mqtt.publish(delivery.topic or "", delivery.body)
            except Exception as exc:  # noqa: BLE001 - the operator's own broker: its error is theirs to read
                return f"{type(exc).__name__}: {exc}"[:300]
            return None
        try:
            url, secret = secrets.get(delivery.subscription_id, (None, None))
            if url is None:
                return "subscription has no URL (deleted?)"
            body = delivery.body.encode()
            stamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "X-Lookout-Timestamp": stamp,
                       "X-Lookout-Delivery": str(delivery.id), "X-Lookout-Change": str(delivery.change_id),
                       "User-Agent": "Lookout-Webhook/1"}
            if secret:
                headers["X-Lookout-Signature"] = signature(secret, stamp, body)
            with self.http.stream("POST", url, content=body, headers=headers) as response:
                status = response.status_code  # its body is never read: not kept, not shown, not buffered
            return None if 200 <= status < 300 else status_reason(status)
        except DestinationRefused as exc:
            log.warning("webhook_destination_refused", extra={
                "delivery_id": delivery.id, "subscription_id": delivery.subscription_id, "reason": str(exc)})
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure is a failed try, recorded and retried
            return failure_reason(exc)


def fan_out_in(sessions: sessionmaker[Session], policy: AlertPolicy) -> int:
    with sessions() as session:
        return fan_out(session, policy)
