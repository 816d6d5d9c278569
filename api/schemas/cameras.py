"""Camera bodies. The request bodies are `registry.camera_spec`'s; responses live here."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from registry.camera_spec import CameraPatch, CameraSpec
from registry.rules_spec import RulesSpec

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


class CameraUpdateOut(CameraOut):
    """The camera after a PATCH, and what happened to its credentials."""

    credentials_dropped: bool = Field(
        False, description="true when the stored credentials were removed because a stream URL's or the ONVIF "
                           "endpoint's host or port changed and no new credentials came with the change: "
                           "credentials are only ever sent to the host and port they were given for")
    notice: str | None = Field(None, description="what the caller should do about it, when something was dropped")


class CameraPage(BaseModel):
    items: list[CameraOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")
    total: int | None = Field(None, description="only with ?with_total=true")


class RowErrorOut(BaseModel):
    line: int
    message: str


class ImportReportOut(BaseModel):
    """What an import did. Only the first `security.import_errors_shown` errors are here."""

    import_id: int
    encoding: str
    dry_run: bool
    rows: int
    created: int = Field(description="in a dry run: would be created")
    updated: int = Field(description="in a dry run: would be updated (or found unchanged)")
    unchanged: int
    credentials_dropped: int = Field(
        0, description="rows whose stream URL or ONVIF endpoint moved to another host or port without new "
                       "credentials: the stored ones were removed (listed as notices at errors_url)")
    errors_total: int = Field(description="rows refused, all of them")
    errors: list[RowErrorOut] = Field(description="the first refused rows, in line order")
    errors_url: str = Field(description="every refused row and notice, paged: GET it with the same token")


class ImportRunOut(BaseModel):
    """The record of one import (kept `security.import_keep_days` days)."""

    id: int
    actor: str
    dry_run: bool
    state: str = Field(description="running, done or failed (rows written before a failure stay)")
    encoding: str
    rows: int
    created: int
    updated: int
    unchanged: int
    credentials_dropped: int
    errors: int
    detail: str | None = Field(description="why it failed")
    started_at: datetime
    finished_at: datetime | None
    errors_url: str


class ImportProblemOut(BaseModel):
    line: int
    kind: str = Field(description="error: the row was refused; notice: applied, with a warning")
    message: str


class ImportProblemsPage(BaseModel):
    import_id: int
    items: list[ImportProblemOut]
    next_after_line: int | None = Field(description="pass as ?after_line= for the next page; null on the last")


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
    decode_errors: int | None = Field(None, description="damaged frames (bit errors) since this worker took the camera")
    recent_decode_errors: int | None = Field(None, description="damaged frames in the last minute; 5 or more "
                                             "held for 10 s mark the camera degraded")
    last_error: str | None = None


class CameraRulesOut(BaseModel):
    """The rules a camera's detections go through: its own, or the defaults (`custom` false)."""

    camera_id: int
    custom: bool
    rules: RulesSpec
