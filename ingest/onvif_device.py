"""ONVIF: what a device says about itself (for registering it) and PTZ presets (for alerts).

Technicians register thousands of points by hand in these counties; probing the device for its
profiles and stream URIs saves typing a URL per camera and gets the sub stream right, which
decides how many cameras a worker can watch. Talks SOAP through onvif-zeep-async.

Every failure becomes a `LookoutError` naming the device: wrong credentials (422), not an ONVIF
device or unreachable (502), no answer in time (504). Passwords never appear in a message.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from lxml import etree
from onvif import ONVIFCamera
from onvif.exceptions import ONVIFAuthError, ONVIFError, ONVIFTimeoutError
from zeep.exceptions import Fault, TransportError, XMLParseError, XMLSyntaxError

from config.errors import DeviceAuthFailed, DeviceError, DeviceTimeout, LookoutError, NotFound
from registry.credentials import Credentials, split_userinfo

log = logging.getLogger("lookout.onvif")

PTZ_NAMESPACE = "http://www.onvif.org/ver20/ptz/wsdl"
_AUTH_WORDS = ("not authorized", "notauthorized", "unauthorized", "authority", "authentication", "sender not auth")


@dataclass(frozen=True, slots=True)
class DeviceAddress:
    """Where a device's ONVIF service answers, with the credentials to use."""

    host: str
    port: int
    credentials: Credentials | None = None
    camera_id: int | None = None

    def context(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "camera_id": self.camera_id}


@dataclass(frozen=True, slots=True)
class MediaProfile:
    token: str
    name: str | None
    encoding: str | None
    width: int | None
    height: int | None
    fps: float | None
    bitrate_kbps: int | None
    stream_url: str | None
    ptz: bool


@dataclass(frozen=True, slots=True)
class Preset:
    token: str
    name: str | None


@dataclass(slots=True)
class DeviceProbe:
    """What a device said about itself, shaped so that a camera can be registered from it."""

    host: str
    port: int
    manufacturer: str | None = None
    model: str | None = None
    firmware_version: str | None = None
    serial_number: str | None = None
    hardware_id: str | None = None
    profiles: list[MediaProfile] = field(default_factory=list)
    main_stream_url: str | None = None
    sub_stream_url: str | None = None
    snapshot_url: str | None = None
    ptz: bool = False
    presets: list[Preset] = field(default_factory=list)


def _unreachable(exc: BaseException) -> str:
    """Why a device could not be reached, in fixed words: the exception's kind and its errno's
    name, never its message, which can quote what any TCP service on that port sent back (an
    SSH or Redis banner): the probe must not become a banner grabber."""
    cause: BaseException | None = exc
    while cause is not None:
        number = getattr(cause, "errno", None)
        if isinstance(cause, OSError) and number is not None:
            return f"{type(exc).__name__}: {os.strerror(number).lower()}"
        cause = getattr(cause, "os_error", None) or cause.__cause__ or cause.__context__
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{type(exc).__name__}: HTTP {exc.status}"
    return type(exc).__name__


def _is_auth_refusal(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in _AUTH_WORDS)


@asynccontextmanager
async def _session(address: DeviceAddress, timeout: float) -> AsyncIterator[ONVIFCamera]:
    """An ONVIF session with its services resolved, every failure mapped to a `LookoutError`."""
    where = f"{address.host}:{address.port}"
    context = address.context()
    user = address.credentials.username if address.credentials else None
    password = address.credentials.password if address.credentials else None
    camera = ONVIFCamera(address.host, address.port, user, password, no_cache=True, adjust_time=True)
    try:
        async with asyncio.timeout(timeout):
            await camera.update_xaddrs()
            yield camera
    except LookoutError:
        raise
    except (TimeoutError, ONVIFTimeoutError, aiohttp.ServerTimeoutError):
        raise DeviceTimeout(f"ONVIF device {where} did not answer within {timeout:g} s", **context) from None
    except ONVIFAuthError:
        raise DeviceAuthFailed(f"ONVIF device {where} refused the username or password", field="password",
                               **context) from None
    except Fault as exc:
        reason = " ".join(str(part) for part in (exc.message, exc.code, exc.subcodes) if part)
        if _is_auth_refusal(reason):
            raise DeviceAuthFailed(f"ONVIF device {where} refused the username or password", field="password",
                                   **context) from None
        if exc.code is None and not exc.subcodes:  # zeep found no SOAP fault in an HTTP error page
            raise DeviceError(f"{where} did not answer as an ONVIF device (an HTTP error without a SOAP fault): "
                              "not an ONVIF device, or a wrong port", **context) from None
        raise DeviceError(f"ONVIF device {where} answered with a fault: {str(exc.message)[:200]}", **context) from None
    except TransportError as exc:
        if exc.status_code in (401, 403):
            raise DeviceAuthFailed(f"ONVIF device {where} refused the username or password", field="password",
                                   **context) from None
        raise DeviceError(f"{where} answered HTTP {exc.status_code} on its ONVIF device service: "
                          "not an ONVIF device, or a wrong port", **context) from None
    except (XMLSyntaxError, XMLParseError, etree.XMLSyntaxError) as exc:
        raise DeviceError(f"{where} did not answer as an ONVIF device ({type(exc).__name__})", **context) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise DeviceError(f"cannot reach ONVIF device {where}: {_unreachable(exc)}", **context) from None
    except (AttributeError, TypeError, ValueError, LookupError) as exc:
        # zeep and onvif-zeep-async fail this way on a reply that is no SOAP at all (a JSON 404
        # page, an HTML error page, an empty envelope): an HTTP service, but not an ONVIF device
        log.info("onvif_unreadable_reply", extra={**context, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
        raise DeviceError(f"{where} did not answer as an ONVIF device (a reply that is not SOAP): "
                          "not an ONVIF device, or a wrong port", **context) from None
    except ONVIFError as exc:
        text = str(exc)
        if _is_auth_refusal(text):
            raise DeviceAuthFailed(f"ONVIF device {where} refused the username or password", field="password",
                                   **context) from None
        # the library's own reason only: what follows its first ":" may quote the far end's bytes
        raise DeviceError(f"ONVIF device {where}: {text.split(':', 1)[0][:100]}", **context) from None
    finally:
        await camera.close()


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _profile(raw: Any, stream_url: str | None) -> MediaProfile:
    encoder = getattr(raw, "VideoEncoderConfiguration", None)
    resolution = getattr(encoder, "Resolution", None)
    rate = getattr(encoder, "RateControl", None)
    width, height = _number(getattr(resolution, "Width", None)), _number(getattr(resolution, "Height", None))
    fps, bitrate = _number(getattr(rate, "FrameRateLimit", None)), _number(getattr(rate, "BitrateLimit", None))
    return MediaProfile(
        token=str(raw.token), name=getattr(raw, "Name", None), encoding=getattr(encoder, "Encoding", None),
        width=int(width) if width else None, height=int(height) if height else None, fps=fps,
        bitrate_kbps=int(bitrate) if bitrate else None, stream_url=stream_url,
        ptz=getattr(raw, "PTZConfiguration", None) is not None,
    )


def _without_userinfo(url: str | None) -> str | None:
    """Some devices put their credentials into the URIs they return; never pass those on."""
    return split_userinfo(url)[0] if url else None


async def probe_device(address: DeviceAddress, timeout: float) -> DeviceProbe:
    """Device information, media profiles with stream URIs, snapshot URI, PTZ and its presets.

    The largest profile becomes the main stream and the smallest the sub stream, which is the
    one the workers analyse.
    """
    async with _session(address, timeout) as camera:
        device = await camera.create_devicemgmt_service()
        info = await device.GetDeviceInformation()
        probe = DeviceProbe(
            host=address.host, port=address.port, manufacturer=info.Manufacturer, model=info.Model,
            firmware_version=info.FirmwareVersion, serial_number=info.SerialNumber,
            hardware_id=getattr(info, "HardwareId", None),
        )
        media = await camera.create_media_service()
        setup = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}
        for raw in await media.GetProfiles() or []:
            uri = await media.GetStreamUri({"StreamSetup": setup, "ProfileToken": raw.token})
            probe.profiles.append(_profile(raw, _without_userinfo(getattr(uri, "Uri", None))))
        with_video = [p for p in probe.profiles if p.stream_url]
        if with_video:
            by_size = sorted(with_video, key=lambda p: (p.width or 0) * (p.height or 0), reverse=True)
            probe.main_stream_url = by_size[0].stream_url
            if len(by_size) > 1 and by_size[-1].stream_url != probe.main_stream_url:
                probe.sub_stream_url = by_size[-1].stream_url
            try:
                snapshot = await media.GetSnapshotUri({"ProfileToken": by_size[0].token})
                probe.snapshot_url = _without_userinfo(getattr(snapshot, "Uri", None))
            except Fault:
                probe.snapshot_url = None  # optional in Profile S
        probe.ptz = PTZ_NAMESPACE in camera.xaddrs and any(p.ptz for p in probe.profiles)
        if probe.ptz:
            ptz = await camera.create_ptz_service()
            token = next(p.token for p in probe.profiles if p.ptz)
            probe.presets = _presets(await ptz.GetPresets({"ProfileToken": token}))
    log.info("onvif_probed", extra={**address.context(), "profiles": len(probe.profiles), "ptz": probe.ptz})
    return probe


def _presets(raw: Any) -> list[Preset]:
    return [Preset(token=str(p.token), name=getattr(p, "Name", None)) for p in raw or []]


async def _ptz_profile(camera: ONVIFCamera, address: DeviceAddress) -> tuple[Any, str]:
    if PTZ_NAMESPACE not in camera.xaddrs:
        raise DeviceError(f"ONVIF device {address.host}:{address.port} has no PTZ service", **address.context())
    media = await camera.create_media_service()
    profiles = [p for p in await media.GetProfiles() or [] if getattr(p, "PTZConfiguration", None) is not None]
    if not profiles:
        raise DeviceError(f"ONVIF device {address.host}:{address.port} has no PTZ profile", **address.context())
    return await camera.create_ptz_service(), str(profiles[0].token)


async def list_presets(address: DeviceAddress, timeout: float) -> list[Preset]:
    async with _session(address, timeout) as camera:
        ptz, profile = await _ptz_profile(camera, address)
        return _presets(await ptz.GetPresets({"ProfileToken": profile}))


async def goto_preset(address: DeviceAddress, preset: str, timeout: float, speed: float | None = None) -> Preset:
    """Turn the camera to a stored preset (an alert points the nearest PTZ camera at the scene).

    The preset is checked against the device's list first: many devices answer success to an
    unknown token and simply do not move."""
    async with _session(address, timeout) as camera:
        ptz, profile = await _ptz_profile(camera, address)
        known = {p.token: p for p in _presets(await ptz.GetPresets({"ProfileToken": profile}))}
        if preset not in known:
            raise NotFound(f"preset {preset!r} is not defined on the camera", field="preset", **address.context())
        request: dict[str, Any] = {"ProfileToken": profile, "PresetToken": preset}
        if speed is not None:
            request["Speed"] = {"PanTilt": {"x": speed, "y": speed}, "Zoom": {"x": speed}}
        await ptz.GotoPreset(request)
    log.info("ptz_goto_preset", extra={**address.context(), "preset": preset})
    return known[preset]
