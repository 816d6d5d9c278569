"""WS-Discovery: find the ONVIF devices on the local networks by multicast Probe.

The PyPI `wsdiscovery` package probes only from non-loopback interfaces. Here the Probe goes
out of every IPv4 interface that is up and multicast-capable, loopback included (a device
emulator or a local NVR's ONVIF proxy on the same host answers there), each from its own
socket, twice against UDP loss. Replies are matched to our Probe by RelatesTo and parsed
with entity resolution off (they come from anyone on the segment).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import struct
import uuid
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from lxml import etree

log = logging.getLogger("lookout.discovery")

MULTICAST_GROUP = ("239.255.255.250", 3702)
_SIOCGIFFLAGS = 0x8913
_SIOCGIFADDR = 0x8915
_IFF_UP = 0x1
_IFF_MULTICAST = 0x1000
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_comments=True)

PROBE = """<?xml version="1.0" encoding="UTF-8"?>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"
 xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"
 xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery"
 xmlns:dn="http://www.onvif.org/ver10/network/wsdl">
 <s:Header>
  <a:Action s:mustUnderstand="1">http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action>
  <a:MessageID>{message_id}</a:MessageID>
  <a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>
  <a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>
 </s:Header>
 <s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body>
</s:Envelope>"""


@dataclass(slots=True)
class DiscoveredDevice:
    """One ProbeMatch: the device's endpoint id and where its ONVIF service answers."""

    endpoint: str
    xaddrs: list[str]
    types: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)

    @property
    def host(self) -> str | None:
        return urlsplit(self.xaddrs[0]).hostname if self.xaddrs else None

    @property
    def port(self) -> int | None:
        if not self.xaddrs:
            return None
        parts = urlsplit(self.xaddrs[0])
        try:
            return parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None

    def scope(self, kind: str) -> str | None:
        """The value of an `onvif://www.onvif.org/<kind>/<value>` scope (name, hardware, location)."""
        prefix = f"onvif://www.onvif.org/{kind}/"
        for scope in self.scopes:
            if scope.startswith(prefix):
                return unquote(scope[len(prefix):])
        return None


def interface_addresses() -> list[tuple[str, str]]:
    """(interface, IPv4 address) of every interface that is up and can multicast."""
    found: list[tuple[str, str]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            packed = struct.pack("256s", name.encode()[:15])
            try:
                flags = struct.unpack("H", fcntl.ioctl(probe.fileno(), _SIOCGIFFLAGS, packed)[16:18])[0]
                if not (flags & _IFF_UP and flags & _IFF_MULTICAST):
                    continue
                address = socket.inet_ntoa(fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, packed)[20:24])
            except OSError:  # no IPv4 address on this interface
                continue
            found.append((name, address))
    return found


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def parse_probe_matches(data: bytes, message_id: str) -> list[DiscoveredDevice]:
    """The devices in one reply to our Probe; [] for anything else (other probes, Hello, noise).

    Tolerates a ProbeMatch outside its ProbeMatches wrapper, as some cameras send it."""
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError:
        return []
    relates = [el.text for el in root.iter() if _local(el.tag) == "RelatesTo"]
    if message_id not in [(text or "").strip() for text in relates]:
        return []
    devices = []
    for match in (el for el in root.iter() if _local(el.tag) == "ProbeMatch"):
        values: dict[str, str] = {}
        for child in match.iter():
            name = _local(child.tag)
            if name in ("Address", "Types", "Scopes", "XAddrs") and child.text:
                values.setdefault(name, child.text.strip())
        xaddrs = [x for x in values.get("XAddrs", "").split() if x.startswith(("http://", "https://"))]
        if not xaddrs:
            continue
        devices.append(DiscoveredDevice(
            endpoint=values.get("Address", xaddrs[0]), xaddrs=xaddrs,
            types=values.get("Types", "").split(), scopes=values.get("Scopes", "").split(),
        ))
    return devices


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, message_id: str, into: dict[str, DiscoveredDevice]) -> None:
        self.message_id = message_id
        self.into = into

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        for device in parse_probe_matches(data, self.message_id):
            self.into.setdefault(device.endpoint, device)


async def discover(timeout: float, ttl: int = 1) -> list[DiscoveredDevice]:
    """Every device that answers a Probe within `timeout` seconds, once each, by endpoint id."""
    message_id = f"urn:uuid:{uuid.uuid4()}"
    message = PROBE.format(message_id=message_id).encode()
    found: dict[str, DiscoveredDevice] = {}
    loop = asyncio.get_running_loop()
    transports = []
    for name, address in interface_addresses():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            sock.bind((address, 0))
            sock.setblocking(False)
            transport, _ = await loop.create_datagram_endpoint(lambda: _Collector(message_id, found), sock=sock)
        except OSError as exc:
            sock.close()
            log.warning("discovery_interface_skipped", extra={"interface": name, "error": str(exc)})
            continue
        transports.append((name, transport))
    try:
        for attempt in range(2):
            for name, transport in transports:
                try:
                    transport.sendto(message, MULTICAST_GROUP)
                except OSError as exc:
                    log.warning("discovery_send_failed", extra={"interface": name, "error": str(exc)})
            await asyncio.sleep(timeout / 2)
    finally:
        for _, transport in transports:
            transport.close()
    log.info("discovery_done", extra={"interfaces": len(transports), "devices": len(found)})
    return list(found.values())
