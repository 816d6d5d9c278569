"""ONVIF routes: probe a device before registering it, discover devices on the local networks,
and turn a PTZ camera to a preset.

These reach out to devices, so they are async (the SOAP client is) and keep database work in
the thread pool."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from api.deps import PathId, ServicesDep, require
from api.schemas.onvif import DiscoverOut, DiscoverRequest, GotoPresetRequest, PresetsOut, ProbeOut, ProbeRequest
from api.services import Services
from config.errors import InvalidInput
from ingest.onvif_device import DeviceAddress, Preset, goto_preset, list_presets, probe_device
from ingest.ws_discovery import discover
from registry import audit
from registry.credentials import Credentials
from registry.users import CAMERA_WRITERS, PTZ_OPERATORS, Principal

router = APIRouter(prefix="/api/v1/cameras", tags=["onvif"])
Writer = Annotated[Principal, Depends(require(CAMERA_WRITERS))]
PtzUser = Annotated[Principal, Depends(require(PTZ_OPERATORS))]


def _registered(services: Services, addresses: list[tuple[str, int]], scope: str) -> dict[tuple[str, int], tuple[bool, list[int]]]:
    with services.sessions() as session:
        return services.registry.at_onvif_addresses(session, addresses, scope)


@router.post("/probe", response_model=ProbeOut)
async def probe(body: ProbeRequest, user: Writer, services: ServicesDep) -> dict[str, object]:
    """Ask a device for its identity, profiles, stream URIs (credentials left out), snapshot URI,
    PTZ and presets. 422 when it refuses the credentials, 502 when it is not an ONVIF device or
    cannot be reached, 504 when it does not answer in time."""
    credentials = None
    if body.username is not None or body.password is not None:
        credentials = Credentials(body.username or "", body.password.get_secret_value() if body.password else "")
    found = await probe_device(DeviceAddress(body.host, body.port, credentials), body.timeout_seconds)
    registered = await run_in_threadpool(_registered, services, [(body.host, body.port)], user.scope)
    name = " ".join(part for part in (found.manufacturer, found.model, found.serial_number) if part) or body.host
    return {
        **asdict(found),
        "registered_camera_ids": registered[(body.host, body.port)][1],
        "camera": {"name": name[:200], "onvif_host": body.host, "onvif_port": body.port,
                   "main_stream_url": found.main_stream_url, "sub_stream_url": found.sub_stream_url},
    }


@router.post("/discover", response_model=DiscoverOut)
async def discover_devices(body: DiscoverRequest, user: Writer, services: ServicesDep) -> dict[str, object]:
    """WS-Discovery on every local interface (loopback included) for `timeout_seconds`; lists the
    devices not registered yet unless `include_registered`."""
    devices = await discover(body.timeout_seconds)
    addresses = [(d.host, d.port) for d in devices if d.host and d.port]
    registered = await run_in_threadpool(_registered, services, addresses, user.scope)
    listed = []
    for device in devices:
        known, ids = registered.get((device.host, device.port), (False, [])) if device.host and device.port else (False, [])
        if known and not body.include_registered:
            continue
        listed.append({
            "endpoint": device.endpoint, "xaddrs": device.xaddrs, "host": device.host, "port": device.port,
            "name": device.scope("name"), "hardware": device.scope("hardware"), "location": device.scope("location"),
            "types": device.types, "scopes": device.scopes, "registered": known, "registered_camera_ids": ids,
        })
    return {"devices": listed, "answered": len(devices)}


def _ptz_address(services: Services, camera_id: int, scope: str) -> DeviceAddress:
    with services.sessions() as session:
        camera = services.registry.get(session, camera_id, scope)
        if not camera.onvif_host:
            raise InvalidInput(f"camera {camera_id} has no ONVIF address (onvif_host)", field="onvif_host",
                               camera_id=camera_id)
        return DeviceAddress(camera.onvif_host, camera.onvif_port or 80, services.registry.onvif_credentials(camera),
                             camera_id)


@router.get("/{camera_id}/ptz/presets", response_model=PresetsOut)
async def presets(camera_id: PathId, user: PtzUser, services: ServicesDep) -> dict[str, object]:
    address = await run_in_threadpool(_ptz_address, services, camera_id, user.scope)
    found = await list_presets(address, timeout=10.0)
    return {"camera_id": camera_id, "presets": [asdict(p) for p in found]}


@router.post("/{camera_id}/ptz/goto-preset", response_model=Preset)
async def ptz_goto_preset(camera_id: PathId, body: GotoPresetRequest, user: PtzUser,
                          services: ServicesDep) -> dict[str, object]:
    """Turn the camera to a preset stored on it; recorded in the audit log."""
    address = await run_in_threadpool(_ptz_address, services, camera_id, user.scope)
    preset = await goto_preset(address, body.preset, body.timeout_seconds, body.speed)

    def record() -> None:
        with services.sessions() as session:
            unit_id = services.registry.get(session, camera_id, user.scope).unit_id
            audit.record(session, user.actor, "camera.ptz_preset", "camera", camera_id, unit_id,
                         after={"preset": preset.token})
            session.commit()

    await run_in_threadpool(record)
    return asdict(preset)
