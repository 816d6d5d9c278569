"""Subscription bodies: filters and a channel (webhook or MQTT), and its deliveries.

Names are single-line text (the shared `Name` type: no control characters, no line breaks);
URLs, kinds and topic prefixes refuse control characters too: a 422 naming the field. Where a
webhook may point is checked by the route (`alerts.destinations`), which knows the
operator's allow and deny lists."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AnyHttpUrl, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from alerts.subscriptions import Channel
from config.alerting import Severity
from registry.fields import ArmedWindow, DbId, Name, has_control_characters


def _no_control(value: object) -> object:
    """Refuse control characters before a URL is parsed (the URL parser would drop tabs and
    line breaks silently: what a user typed should be what is stored) or a topic is used."""
    if isinstance(value, str) and has_control_characters(value):
        raise ValueError("control characters are not allowed")
    return value


TopicPrefix = Annotated[str, BeforeValidator(_no_control), Field(min_length=1, max_length=150, pattern=r"^[^#+]+$")]
#: an event kind (flame, smoke, camera_offline...): word characters, dots and dashes
Kind = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32, pattern=r"^[\w.-]+$")]
WebhookUrl = Annotated[AnyHttpUrl, BeforeValidator(_no_control)]
#: hours of the local day the subscription is on, as the rules' armed windows are written
Hours = ArmedWindow


class SubscriptionFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    unit_id: DbId | None = Field(None, description="alerts of this unit's subtree; default: your own unit")
    kinds: list[Kind] = Field(
        default_factory=list, max_length=16, description="e.g. flame, smoke; empty: every kind")
    min_severity: Severity = "info"
    hours: Hours | None = None
    addressed_only: bool = Field(False, description="only alerts sent to the unit itself (escalated, broadcast)")


class SubscriptionCreate(SubscriptionFilters):
    channel: Channel
    url: WebhookUrl | None = Field(None, description="webhook: where the JSON is POSTed (not to this machine, "
                                                     "link-local or multicast addresses; see README Security)")
    secret: str | None = Field(None, min_length=16, max_length=200,
                               description="webhook: the HMAC key; default: one is made and shown once")
    topic_prefix: TopicPrefix | None = Field(None, description="mqtt: topics are <prefix>/<unit code>/<kind>; "
                                                                 "default lookout/<your username>")

    @model_validator(mode="after")
    def _channel_needs(self) -> SubscriptionCreate:
        if self.channel == Channel.webhook and self.url is None:
            raise ValueError("a webhook subscription needs url")
        if self.channel == Channel.mqtt and self.url is not None:
            raise ValueError("an mqtt subscription takes topic_prefix, not url")
        return self


class SubscriptionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    kinds: list[Kind] | None = Field(None, max_length=16)
    min_severity: Severity | None = None
    hours: Hours | None = None
    addressed_only: bool | None = None
    url: WebhookUrl | None = None
    active: bool | None = None


class SubscriptionOut(BaseModel):
    id: int
    user_id: int
    name: str
    unit_id: int
    kinds: list[str]
    min_severity: str
    hours: Hours | None
    addressed_only: bool
    channel: str
    url: str | None
    topic_prefix: str | None
    active: bool
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(SubscriptionOut):
    secret: str | None = Field(description="webhook: the HMAC key, shown this once")


class DeliveryOut(BaseModel):
    id: int
    subscription_id: int
    alert_id: int
    change_id: int
    channel: str
    topic: str | None
    state: str = Field(description="pending, delivered or dead (a dead letter)")
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class ReplayOut(BaseModel):
    requeued: int
