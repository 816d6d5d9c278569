"""Camera bodies. The request bodies are `ingest.camera_spec`'s; responses live here."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from ingest.camera_spec import CameraPatch, CameraSpec
from ingest.rules_spec import RulesSpec

CameraCreate = CameraSpec
CameraUpdate = CameraPatch


class CameraOut(BaseModel):
    """A camera as the API shows it. Credentials are never shown: only `has_credentials`."""

    id: int
    name: str
    network: str
    unit_id: int
    owner: str | None
    latitude: float | None
    longitude: float | None
    address: str | None
    main_stream_url: str | None
    sub_stream_url: str | None
    onvif_host: str | None
    onvif_port: int | None
    device_id: str | None
    tags: list[str]
    enabled: bool
    status: str = Field(description="unknown, online, offline or degraded")
    last_seen_at: datetime | None
    last_error: str | None
    has_credentials: bool
    created_at: datetime
    updated_at: datetime


class CameraPage(BaseModel):
    items: list[CameraOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")
    total: int | None = Field(None, description="only with ?with_total=true")


class RowErrorOut(BaseModel):
    line: int
    message: str


class ImportReportOut(BaseModel):
    encoding: str
    dry_run: bool
    rows: int
    created: int
    updated: int
    unchanged: int
    errors: list[RowErrorOut]


class StreamFiguresOut(BaseModel):
    """Figures of the live stream, from the worker that reads it; null fields when none does."""

    camera_id: int
    at: float | None = Field(None, description="Unix time of the measurement")
    worker_id: str | None = None
    connected: bool | None = None
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    packets_per_second: float | None = None
    decoded_per_second: float | None = None
    frames_decoded: int | None = Field(None, description="frames decoded since this worker took the camera")
    bitrate_kbps: float | None = None
    keyframe_interval_seconds: float | None = None
    reconnects: int | None = None
    decode_errors: int | None = None
    last_error: str | None = None


class CameraRulesOut(BaseModel):
    """The rules a camera's detections go through: its own, or the defaults (`custom` false)."""

    camera_id: int
    custom: bool
    rules: RulesSpec
