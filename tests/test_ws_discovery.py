"""Parsing WS-Discovery replies: only answers to our Probe count, sloppy devices still parse,
and a hostile datagram is neither expanded nor fetched."""

from __future__ import annotations

from ingest.ws_discovery import parse_probe_matches

MESSAGE_ID = "urn:uuid:11111111-2222-3333-4444-555555555555"


def reply(body: str, relates_to: str = MESSAGE_ID) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"
 xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery">
 <s:Header><a:RelatesTo>{relates_to}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>""".encode()


MATCH = """<d:ProbeMatch><a:EndpointReference><a:Address>urn:uuid:cam-1</a:Address></a:EndpointReference>
 <d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types>
 <d:Scopes>onvif://www.onvif.org/name/%E4%B8%9C%E9%97%A8 onvif://www.onvif.org/hardware/DS-2CD onvif://www.onvif.org/location/gate</d:Scopes>
 <d:XAddrs>http://192.0.2.7/onvif/device_service http://[2001:db8::7]/onvif/device_service</d:XAddrs></d:ProbeMatch>"""


def test_a_standard_probe_match_gives_the_device_and_its_address() -> None:
    [device] = parse_probe_matches(reply(f"<d:ProbeMatches>{MATCH}</d:ProbeMatches>"), MESSAGE_ID)
    assert device.endpoint == "urn:uuid:cam-1"
    assert (device.host, device.port) == ("192.0.2.7", 80)
    assert (device.scope("name"), device.scope("hardware"), device.scope("location")) == ("东门", "DS-2CD", "gate")
    assert device.types == ["dn:NetworkVideoTransmitter", "tds:Device"] and len(device.xaddrs) == 2


def test_a_probe_match_outside_its_wrapper_still_parses() -> None:
    assert [d.endpoint for d in parse_probe_matches(reply(MATCH), MESSAGE_ID)] == ["urn:uuid:cam-1"]


def test_replies_to_other_probes_and_garbage_are_ignored() -> None:
    assert parse_probe_matches(reply(MATCH, relates_to="urn:uuid:someone-else"), MESSAGE_ID) == []
    assert parse_probe_matches(b"\x00\xffnot xml", MESSAGE_ID) == []
    no_http = MATCH.replace("http://192.0.2.7/onvif/device_service http://[2001:db8::7]/onvif/device_service", "ftp://x")
    assert parse_probe_matches(reply(no_http), MESSAGE_ID) == []


def test_entities_are_not_expanded() -> None:
    bomb = b"""<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY x SYSTEM "file:///etc/passwd">]>""" + reply(MATCH.replace("urn:uuid:cam-1", "&b;&x;")).split(b"?>", 1)[1]
    devices = parse_probe_matches(bomb, MESSAGE_ID)
    assert all("aaaa" not in d.endpoint and "root:" not in d.endpoint for d in devices)
