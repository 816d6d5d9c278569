"""`Subscription`: a person's standing order for alerts, pushed by webhook or MQTT.

Its filters are a unit subtree (inside the owner's own scope, checked again at every delivery,
so a person moved to another unit stops receiving the old one's alerts), kinds, a minimum
severity, hours of the local day, and "addressed to this unit only" (what was escalated or
broadcast to it). The webhook's signing secret is stored sealed, like camera credentials.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from alerts.feed_items import FeedFilter, FeedItem
from config.database import Base, UTCDateTime, utcnow
from detectors.rules import in_window


class Channel(str, enum.Enum):
    webhook = "webhook"
    mqtt = "mqtt"


class Subscription(Base):
    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    kinds: Mapped[list[str]] = mapped_column(JSON)  # empty: every kind
    min_severity_rank: Mapped[int] = mapped_column(Integer, default=0)
    hours_start: Mapped[int | None] = mapped_column(Integer)  # minute of the local day; None: all day
    hours_end: Mapped[int | None] = mapped_column(Integer)
    addressed_only: Mapped[bool] = mapped_column(Boolean, default=False)
    channel: Mapped[str] = mapped_column(String(16))
    url: Mapped[str | None] = mapped_column(String(1000))  # webhook
    secret_sealed: Mapped[str | None] = mapped_column(Text)  # webhook: HMAC key, sealed
    topic_prefix: Mapped[str | None] = mapped_column(String(200))  # mqtt: <prefix>/<unit code>/<kind>
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def public(self) -> dict[str, object]:
        """As the API and the audit log show it: never the secret."""
        return {"id": self.id, "user_id": self.user_id, "name": self.name, "unit_id": self.unit_id,
                "kinds": list(self.kinds), "min_severity_rank": self.min_severity_rank,
                "hours_start": self.hours_start, "hours_end": self.hours_end, "addressed_only": self.addressed_only,
                "channel": self.channel, "url": self.url, "topic_prefix": self.topic_prefix, "active": self.active,
                "created_at": self.created_at, "updated_at": self.updated_at}


@dataclass(frozen=True, slots=True)
class Route:
    """A subscription as the fan-out matches it: the feed filter of its unit (the same test
    the live feed applies), its owner's current scope, and its hours."""

    subscription_id: int
    channel: str
    filter: FeedFilter
    owner_scope: str
    hours: tuple[int, int] | None

    def takes(self, item: FeedItem, minute_of_day: int) -> bool:
        if not (self.filter.takes(item) and item.unit_path.startswith(self.owner_scope)):
            return False
        if self.hours is None:
            return True
        return bool(in_window(minute_of_day, *self.hours))
