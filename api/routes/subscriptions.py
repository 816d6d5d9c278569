"""`/api/v1/subscriptions`: standing orders for alerts by webhook or MQTT, and their deliveries
(dead letters included, replayable). Each person manages their own; an administrator also
sees those of the people in their subtree."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import select, update

from alerts.delivery import Delivery, DeliveryState
from alerts.destinations import Destinations
from alerts.subscriptions import Channel, Subscription
from api.deps import CurrentUser, PathId, ServicesDep, SessionDep
from api.schemas.subscriptions import (
    DeliveryOut,
    ReplayOut,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionOut,
    SubscriptionUpdate,
)
from config.alerting import SEVERITIES
from config.database import utcnow
from config.errors import InvalidInput, NotFound
from registry import audit
from registry.fields import clock, minutes
from registry.units import get_unit, subtree_ids
from registry.users import Principal, Role, User

router = APIRouter(prefix="/api/v1/subscriptions", tags=["subscriptions"])


def _out(sub: Subscription) -> dict[str, object]:
    shown = sub.public()
    shown["min_severity"] = SEVERITIES[sub.min_severity_rank]
    shown["hours"] = None if sub.hours_start is None or sub.hours_end is None else {
        "start": clock(sub.hours_start), "end": clock(sub.hours_end)}
    return shown


def _visible(user: Principal):  # type: ignore[no-untyped-def]
    """Your own subscriptions; an administrator's also those of everyone in their subtree."""
    if user.role == Role.admin:
        return Subscription.user_id.in_(select(User.id).where(User.unit_id.in_(subtree_ids(user.scope))))
    return Subscription.user_id == user.user_id


def _get(session: SessionDep, subscription_id: int, user: Principal) -> Subscription:
    found = session.scalar(select(Subscription).where(Subscription.id == subscription_id, _visible(user)))
    if found is None:
        raise NotFound(f"subscription {subscription_id} not found", subscription_id=subscription_id)
    return found


def _unit_of(sub: Subscription, session: SessionDep) -> int:
    return session.get_one(User, sub.user_id).unit_id


@router.post("", response_model=SubscriptionCreated, status_code=201)
def create(body: SubscriptionCreate, user: CurrentUser, session: SessionDep,
           services: ServicesDep) -> dict[str, object]:
    unit = get_unit(session, body.unit_id or user.unit_id, user.scope)  # 404 outside your own subtree
    if body.url is not None:
        Destinations.from_settings(services.settings.security).check_url(str(body.url))  # 422 naming url
    secret = None
    sub = Subscription(user_id=user.user_id, name=body.name, unit_id=unit.id, kinds=body.kinds,
                       min_severity_rank=SEVERITIES.index(body.min_severity), addressed_only=body.addressed_only,
                       channel=body.channel.value, active=True)
    if body.hours is not None:
        sub.hours_start, sub.hours_end = minutes(body.hours.start), minutes(body.hours.end)
    if body.channel == Channel.webhook:
        secret = body.secret or secrets.token_urlsafe(32)
        sub.url, sub.secret_sealed = str(body.url), services.registry.cipher.seal_text(secret)
    else:
        if services.settings.alerts.mqtt_url is None:
            raise InvalidInput("no MQTT broker is configured (alerts.mqtt_url)", field="channel")
        sub.topic_prefix = body.topic_prefix or f"lookout/{user.username}"
    session.add(sub)
    session.flush()
    audit.record(session, user.actor, "subscription.create", "subscription", sub.id, user.unit_id, None, sub.public())
    session.commit()
    return _out(sub) | {"secret": secret}


@router.get("", response_model=list[SubscriptionOut])
def list_subscriptions(user: CurrentUser, session: SessionDep) -> list[dict[str, object]]:
    return [_out(s) for s in session.scalars(select(Subscription).where(_visible(user)).order_by(Subscription.id))]


@router.get("/{subscription_id}", response_model=SubscriptionOut)
def read(subscription_id: PathId, user: CurrentUser, session: SessionDep) -> dict[str, object]:
    return _out(_get(session, subscription_id, user))


@router.patch("/{subscription_id}", response_model=SubscriptionOut)
def change(subscription_id: PathId, body: SubscriptionUpdate, user: CurrentUser,
           session: SessionDep, services: ServicesDep) -> dict[str, object]:
    sub = _get(session, subscription_id, user)
    before = sub.public()
    given = body.model_dump(exclude_unset=True)
    if "url" in given:
        if sub.channel != Channel.webhook.value or body.url is None:
            raise InvalidInput("only a webhook subscription has a url, and it cannot be removed", field="url")
        Destinations.from_settings(services.settings.security).check_url(str(body.url))  # 422 naming url
        sub.url = str(body.url)
    for name in ("name", "kinds", "addressed_only", "active"):
        if name in given and given[name] is not None:
            setattr(sub, name, given[name])
    if body.min_severity is not None:
        sub.min_severity_rank = SEVERITIES.index(body.min_severity)
    if "hours" in given:
        sub.hours_start, sub.hours_end = (None, None) if body.hours is None else (
            minutes(body.hours.start), minutes(body.hours.end))
    session.flush()
    audit.record(session, user.actor, "subscription.update", "subscription", sub.id, _unit_of(sub, session),
                 before, sub.public())
    session.commit()
    return _out(sub)


@router.delete("/{subscription_id}", status_code=204, response_class=Response)
def delete(subscription_id: PathId, user: CurrentUser, session: SessionDep) -> Response:
    sub = _get(session, subscription_id, user)
    before = sub.public()
    unit_id = _unit_of(sub, session)
    session.execute(update(Delivery).where(Delivery.subscription_id == sub.id, Delivery.state == DeliveryState.pending)
                    .values(state=DeliveryState.dead, last_error="subscription deleted"))
    session.delete(sub)
    audit.record(session, user.actor, "subscription.delete", "subscription", subscription_id, unit_id, before, None)
    session.commit()
    return Response(status_code=204)


@router.get("/{subscription_id}/deliveries", response_model=list[DeliveryOut])
def deliveries(
    subscription_id: PathId,
    user: CurrentUser,
    session: SessionDep,
    state: Annotated[list[str], Query(max_length=3, description="pending, delivered, dead")] = [],  # noqa: B006
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, object]]:
    """Newest first; `state=dead` is the dead-letter list."""
    sub = _get(session, subscription_id, user)
    bad = set(state) - {DeliveryState.pending, DeliveryState.delivered, DeliveryState.dead}
    if bad:
        raise InvalidInput(f"unknown state {sorted(bad)[0]!r}", field="state")
    query = select(Delivery).where(Delivery.subscription_id == sub.id)
    if state:
        query = query.where(Delivery.state.in_(state))
    return [d.public() for d in session.scalars(query.order_by(Delivery.id.desc()).limit(limit))]


@router.post("/{subscription_id}/dead-letters/replay", response_model=ReplayOut)
def replay(subscription_id: PathId, user: CurrentUser, session: SessionDep) -> dict[str, int]:
    """Send every dead letter again, as new deliveries with a fresh 24-hour allowance."""
    sub = _get(session, subscription_id, user)
    now = utcnow()
    done = session.execute(update(Delivery).where(Delivery.subscription_id == sub.id,
                                                  Delivery.state == DeliveryState.dead)
                           .values(state=DeliveryState.pending, attempts=0, next_attempt_at=now, created_at=now,
                                   lease_until=None, leased_by=None))
    count = int(done.rowcount or 0)  # type: ignore[attr-defined]
    audit.record(session, user.actor, "subscription.replay", "subscription", sub.id, _unit_of(sub, session), None,
                 {"requeued": count})
    session.commit()
    return {"requeued": count}
