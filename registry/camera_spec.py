"""What a caller may write about a camera, validated once for the API and the CSV import."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from registry.fields import (
    CameraUsername,
    DbId,
    DeviceId,
    Host,
    Latitude,
    Longitude,
    Name,
    Port,
    ShortText,
    StreamUrl,
    Tag,
    Text,
    has_control_characters,
)

Tags = Annotated[list[Tag], Field(max_length=32)]
def _no_control_characters(secret: SecretStr) -> SecretStr:
    if has_control_characters(secret.get_secret_value()):
        raise ValueError("control characters are not allowed")  # the message never quotes the password
    return secret


Password = Annotated[SecretStr, Field(min_length=1, max_length=256), AfterValidator(_no_control_characters)]


class CameraSpec(BaseModel):
    """A camera to create: every writable field. Credentials are write-only."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    network: Annotated[str, Field(min_length=1, max_length=32)]
    unit_id: DbId
    owner: ShortText | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    address: Text | None = None
    main_stream_url: StreamUrl | None = None
    sub_stream_url: StreamUrl | None = None
    onvif_host: Host | None = None
    onvif_port: Port | None = None
    device_id: DeviceId | None = Field(None, description="20-digit GB/T 28181 device id")
    tags: Tags = Field(default_factory=list)
    enabled: bool = True
    username: CameraUsername | None = Field(None, description="write-only")
    password: Password | None = Field(None, description="write-only")

    @model_validator(mode="after")
    def _coordinates_together(self) -> Self:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude must be given together")
        return self


class CameraPatch(BaseModel):
    """A partial update: only the fields present are changed; `null` clears an optional one."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    network: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    unit_id: DbId | None = None
    owner: ShortText | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    address: Text | None = None
    main_stream_url: StreamUrl | None = None
    sub_stream_url: StreamUrl | None = None
    onvif_host: Host | None = None
    onvif_port: Port | None = None
    device_id: DeviceId | None = None
    tags: Tags | None = None
    enabled: bool | None = None
    username: CameraUsername | None = None
    password: Password | None = None
    clear_credentials: bool = Field(False, description="remove the stored credentials")

    @model_validator(mode="after")
    def _required_stay_set(self) -> Self:
        for field in ("name", "network", "unit_id", "enabled", "tags"):
            if field in self.model_fields_set and getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self
