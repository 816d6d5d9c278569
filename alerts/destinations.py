"""Where webhooks may go, and an HTTP client that goes nowhere else.

A webhook URL is typed by a user, and the deliverer calls it from inside the command center's
network. Without a check that is a way into the service's own loopback (Redis, the database,
the API's own port) and into link-local cloud metadata, and the receiver's answer shown back
as `last_error` would make it a port scanner. So:

- some addresses are never a webhook destination: the machine itself (loopback, "this host"
  0.0.0.0/8 and the unspecified address), link-local, multicast and reserved addresses, in
  every spelling (IPv4-mapped and IPv4-compatible IPv6, NAT64 and 6to4 forms are checked as
  the IPv4 address they carry; decimal, octal and hex IPv4 forms are read as the resolver
  reads them). The only way to open one is to name a network inside it in
  `security.webhook_allow_networks` (e.g. `127.0.0.1/32` for a relay on this machine);
- private networks are allowed (county receivers live on them); `webhook_deny_networks`
  closes networks, and a non-empty `webhook_allow_networks` allows only the networks it lists;
- the check is made when a subscription is written (on a literal address or a name that is
  loopback by definition: 422 naming `url`) and again at every send, on each address the name
  resolves to then (DNS can change). The connection is made to the very address that was
  checked (a network backend that resolves, checks and connects in one step), so there is no
  second lookup an attacker's DNS could answer differently; TLS still verifies and sends SNI
  for the URL's host name, and the Host header is the URL's;
- redirects are never followed, and a failed try records a short reason (status, "connection
  refused", the refused address), never a byte of what the receiver sent.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import ssl
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

import httpcore
import httpx

from config.errors import InvalidInput
from config.security import SecuritySettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: never a webhook destination unless an allow-list network inside it opens it; (network, why)
REFUSED: tuple[tuple[IPNetwork, str], ...] = tuple((ipaddress.ip_network(net), why) for net, why in (
    ("0.0.0.0/8", "this host"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # and 255.255.255.255, the broadcast address
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
))
#: host names that are this machine by definition (RFC 6761), whatever a resolver says
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class DestinationRefused(Exception):
    """A webhook's host is, or resolves to, an address webhooks may not reach."""


def _embedded(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _IPV4_COMPATIBLE or address in _NAT64:
        low = int(address) & 0xFFFFFFFF
        return ipaddress.IPv4Address(low) if address not in (ipaddress.ip_address("::"),
                                                             ipaddress.ip_address("::1")) else None
    return None


def _within(address: IPAddress, networks: Iterable[IPNetwork]) -> IPNetwork | None:
    for network in networks:
        if network.version == address.version and address in network:
            return network
    return None


@dataclass(frozen=True)
class Destinations:
    """The operator's allow and deny lists over the fixed refusals; `refusal` is the test."""

    allow: tuple[IPNetwork, ...] = ()
    deny: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, security: SecuritySettings) -> Destinations:
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in security.webhook_allow_networks),
                   tuple(ipaddress.ip_network(n, strict=False) for n in security.webhook_deny_networks))

    def refusal(self, address: IPAddress) -> str | None:
        """Why a webhook may not go to `address`, or None when it may."""
        inner = _embedded(address)
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        effective: IPAddress = mapped or address  # what the kernel connects to
        for candidate in dict.fromkeys(a for a in (address, effective, inner) if a is not None):
            if _within(candidate, self.deny) is not None:
                return f"destination {address} is not allowed (webhook_deny_networks)"
            for network, why in REFUSED:
                inside = network.version == candidate.version and candidate in network
                if inside and not self._opened(candidate, network):
                    return f"destination {address} is not allowed ({why})"
        if self.allow and _within(effective, self.allow) is None:
            return f"destination {address} is not allowed (outside webhook_allow_networks)"
        return None

    def _opened(self, address: IPAddress, refused: IPNetwork) -> bool:
        """Whether the allow list opens `address` of the refused network `refused`: only a
        network inside it does (127.0.0.1/32 opens a local relay; 0.0.0.0/0 opens nothing)."""
        return any(opened.version == refused.version and address in opened
                   and opened.subnet_of(refused)  # type: ignore[arg-type]
                   for opened in self.allow)

    def check_url(self, url: str) -> None:
        """What can be known of `url` without asking DNS: a literal address (in any form the
        resolver reads) or a name that is this machine by definition. 422 naming `url`."""
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
        if not host:
            raise InvalidInput("the webhook URL needs a host", field="url")
        if host in LOCAL_NAMES or host.endswith(".localhost"):
            addresses: list[IPAddress] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
        else:
            literal = numeric_address(host)
            if literal is None:
                return  # a name: checked on what it resolves to, at every send
            addresses = [literal]
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                raise InvalidInput(f"webhook {reason}: webhooks may not reach this machine, link-local, "
                                   "multicast or refused networks", field="url")


def numeric_address(host: str) -> IPAddress | None:
    """`host` as an address when it is one in a form the system's resolver accepts without
    DNS (dotted, decimal `2130706433`, hex `0x7f.1`, octal `0177.0.0.1`, short `127.1`,
    IPv6), else None."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return ipaddress.ip_address(str(infos[0][4][0]).split("%", 1)[0])


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to now, in the resolver's order, without repeats."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpcore.ConnectError(f"host name {host!r} could not be resolved") from exc
    seen: dict[IPAddress, None] = {}
    for *_, sockaddr in infos:
        seen.setdefault(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]), None)
    return list(seen)


class CheckedBackend(httpcore.SyncBackend):
    """httpcore's network backend that resolves the host itself, refuses the whole connection
    when any address it resolves to is refused, and connects to those checked addresses only
    (an address literal involves no further lookup)."""

    def __init__(self, destinations: Destinations) -> None:
        self.destinations = destinations

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None
                    ) -> httpcore.NetworkStream:
        addresses = resolve(host, port)
        for address in addresses:
            reason = self.destinations.refusal(address)
            if reason is not None:
                raise DestinationRefused(reason)
        failure: Exception = httpcore.ConnectError(f"host name {host!r} could not be resolved")
        for address in addresses:  # each one checked above; a literal needs no lookup to connect
            try:
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure


class CheckedTransport(httpx.HTTPTransport):
    """httpx's transport over `CheckedBackend`. httpx 0.28 takes no network backend (a
    parameter for it is proposed in encode/httpx#3749), so the pool is made here the way
    HTTPTransport makes its own; no proxy is ever used (a proxy would connect for us)."""

    def __init__(self, destinations: Destinations, *, verify: ssl.SSLContext | bool = True,
                 limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        super().__init__(verify=verify, trust_env=False, limits=limits)
        context = httpx.create_ssl_context(verify=verify, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=context, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=CheckedBackend(destinations))


def checked_client(destinations: Destinations, timeout: httpx.Timeout, *,
                   verify: ssl.SSLContext | bool = True) -> httpx.Client:
    """An httpx client that reaches only destinations `destinations` allows, and follows no
    redirect."""
    return httpx.Client(transport=CheckedTransport(destinations, verify=verify), timeout=timeout,
                        follow_redirects=False, trust_env=False)


_ERRNO_REASONS = {"ECONNREFUSED": "connection refused", "ECONNRESET": "connection reset",
                  "EHOSTUNREACH": "host unreachable", "ENETUNREACH": "network unreachable",
                  "ETIMEDOUT": "connection timed out"}


def failure_reason(exc: BaseException) -> str:
    """A short, fixed description of why a send failed: the exception's kind and, for a
    socket error, its errno's name; never its message, which can quote what the far end
    sent (h11's "illegal status line: b'SSH-2.0-...'")."""
    if isinstance(exc, DestinationRefused):
        return str(exc)
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return f"{kind}: timed out"
    if isinstance(exc, httpx.ConnectError):
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLCertVerificationError):
                return f"{kind}: TLS certificate not accepted ({cause.verify_message})"
            if isinstance(cause, ssl.SSLError):
                return f"{kind}: TLS handshake failed ({cause.reason or 'unknown reason'})"
            if isinstance(cause, OSError) and cause.errno is not None:
                name = errno.errorcode.get(cause.errno, str(cause.errno))
                return f"{kind}: {_ERRNO_REASONS.get(name, name)}"
            if isinstance(cause, httpcore.ConnectError) and "could not be resolved" in str(cause):
                return f"{kind}: host name could not be resolved"
            cause = cause.__cause__ or cause.__context__
        return f"{kind}: connection failed"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.DecodingError)):
        return f"{kind}: the receiver did not answer in HTTP"
    if isinstance(exc, httpx.InvalidURL):
        return f"{kind}: the webhook URL is not valid"
    return kind


def status_reason(status: int) -> str:
    """`HTTP 500 Internal Server Error`: the status and its standard phrase (not the one the
    receiver sent); a redirect says it was not followed."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    text = f"HTTP {status} {phrase}".rstrip()
    if 300 <= status < 400:
        text += " (redirects are not followed)"
    return text
