"""Bodies of the ONVIF routes: probe, discover, PTZ presets."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ingest.onvif_device import MediaProfile, Preset
from registry.fields import Host, Port

Password = Annotated[SecretStr, Field(min_length=1, max_length=256)]
PresetToken = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f<>&\"']+$")]


class ProbeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: Host
    port: Port = 80
    username: Annotated[str, Field(max_length=128)] | None = None
    password: Password | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 10.0


class CameraDraft(BaseModel):
    """The probed part of a camera body for POST /api/v1/cameras: add network, unit_id and the
    credentials, adjust the name, and send it."""

    name: str
    onvif_host: str
    onvif_port: int
    main_stream_url: str | None
    sub_stream_url: str | None


class ProbeOut(BaseModel):
    host: str
    port: int
    manufacturer: str | None
    model: str | None
    firmware_version: str | None
    serial_number: str | None
    hardware_id: str | None
    profiles: list[MediaProfile] = Field(description="stream URLs without credentials")
    main_stream_url: str | None = Field(description="the largest profile's stream")
    sub_stream_url: str | None = Field(description="the smallest profile's stream: the one workers analyse")
    snapshot_url: str | None
    ptz: bool
    presets: list[Preset]
    registered_camera_ids: list[int] = Field(description="cameras already registered at this ONVIF address")
    camera: CameraDraft


class DiscoverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_seconds: Annotated[float, Field(ge=0.5, le=15)] = 3.0
    include_registered: bool = Field(False, description="also list devices already in the registry")


class DiscoveredOut(BaseModel):
    endpoint: str = Field(description="the device's WS-Discovery endpoint id (urn:uuid:...)")
    xaddrs: list[str]
    host: str | None
    port: int | None
    name: str | None
    hardware: str | None
    location: str | None
    types: list[str]
    scopes: list[str]
    registered: bool = Field(description="a camera of the registry has this ONVIF address")
    registered_camera_ids: list[int] = Field(description="those cameras, where inside your unit")


class DiscoverOut(BaseModel):
    devices: list[DiscoveredOut]
    answered: int = Field(description="devices that answered, registered ones included")


class GotoPresetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: PresetToken
    speed: Annotated[float, Field(gt=0, le=1)] | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 10.0


class PresetsOut(BaseModel):
    camera_id: int
    presets: list[Preset]
