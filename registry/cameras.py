"""`Camera`: one camera point of any network, under one unit.

This is the single home of the camera record. Credentials live only in `credentials_sealed`
(see `registry.credentials`); everything that leaves the process goes through `public()`,
which says `has_credentials` and nothing more.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from config.database import Base, UTCDateTime, utcnow


class CameraStatus(str, enum.Enum):
    unknown = "unknown"
    online = "online"
    offline = "offline"
    degraded = "degraded"


class Camera(Base):
    __tablename__ = "cameras"
    __table_args__ = (
        UniqueConstraint("unit_id", "name", name="uq_cameras_unit_name"),
        Index("ix_cameras_lat_lon", "latitude", "longitude"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    network: Mapped[str] = mapped_column(String(32), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    owner: Mapped[str | None] = mapped_column(String(200))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(String(500))
    main_stream_url: Mapped[str | None] = mapped_column(String(1000))
    sub_stream_url: Mapped[str | None] = mapped_column(String(1000))
    onvif_host: Mapped[str | None] = mapped_column(String(255), index=True)
    onvif_port: Mapped[int | None] = mapped_column(Integer)
    device_id: Mapped[str | None] = mapped_column(String(20), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default=CameraStatus.unknown.value, index=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    credentials_sealed: Mapped[str | None] = mapped_column(Text)
    detection_rules: Mapped[str | None] = mapped_column(Text)  # registry.rules_spec.RulesSpec as JSON; NULL: defaults
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    tag_rows: Mapped[list[CameraTag]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def tags(self) -> list[str]:
        """Sorted in Python, so both backends (with their different collations) agree."""
        return sorted(row.tag for row in self.tag_rows)

    @tags.setter
    def tags(self, values: list[str]) -> None:
        wanted = list(dict.fromkeys(values))
        keep = [row for row in self.tag_rows if row.tag in wanted]
        have = {row.tag for row in keep}
        self.tag_rows = keep + [CameraTag(tag=t) for t in wanted if t not in have]

    @property
    def has_credentials(self) -> bool:
        return self.credentials_sealed is not None

    def public(self) -> dict[str, Any]:
        """The camera as the API and the audit log show it: no credentials."""
        return {
            "id": self.id,
            "name": self.name,
            "network": self.network,
            "unit_id": self.unit_id,
            "owner": self.owner,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "address": self.address,
            "main_stream_url": self.main_stream_url,
            "sub_stream_url": self.sub_stream_url,
            "onvif_host": self.onvif_host,
            "onvif_port": self.onvif_port,
            "device_id": self.device_id,
            "tags": self.tags,
            "enabled": self.enabled,
            "status": self.status,
            "last_seen_at": self.last_seen_at,
            "last_error": self.last_error,
            "has_credentials": self.has_credentials,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class CameraTag(Base):
    """One tag of one camera; a table (not a list column) so `?tag=` is an index lookup."""

    __tablename__ = "camera_tags"

    camera_id: Mapped[int] = mapped_column(
        ForeignKey("cameras.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
