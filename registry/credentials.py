"""Camera credentials: encrypted at rest, never returned, never logged, and only ever sent to
the host and port they were given for.

Credentials are a (username, password) pair sealed with Fernet (AES-128-CBC + HMAC-SHA256)
under the deployment's secret key. Stream URLs often arrive with the password inside, in one
of three forms, and `split_userinfo` moves it out of all of them before the URL is stored:

- userinfo: `rtsp://admin:12345@10.0.0.7/...`;
- the query string: `rtsp://10.0.0.7/cam/realmonitor?channel=1&user=admin&password=12345`
  (also `username=`, `pwd=`, `passwd=`, any case);
- the path form of Dahua/XM-style NVRs: `rtsp://10.0.0.7:554/user=admin&password=12345&channel=1&stream=0.sdp?`.

The sealed blob also holds the *endpoints* (`host:port`, default ports filled in) the
credentials belong to: the stream URLs' and the ONVIF endpoint's at the moment they were
given. `join_userinfo`, which builds the URL a reader opens, refuses to put them into a URL
of any other endpoint, so a stream URL changed to a host someone else controls (through an
old code path, or by hand in the database) never receives them. It puts them back in the
form they came in, remembered per URL, since an NVR that reads its password from the path
does not read it from the userinfo.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from cryptography.fernet import Fernet, InvalidToken

from config.errors import ConfigError, LookoutError
from config.private_files import secret_file

if TYPE_CHECKING:
    from config.settings import Settings

log = logging.getLogger("lookout.credentials")

#: Keys of a query string or NVR path that carry credentials, lower case → u(sername) / p(assword).
SECRET_KEYS = {"user": "u", "username": "u", "usr": "u", "loginuse": "u",
               "password": "p", "pwd": "p", "passwd": "p", "pass": "p", "loginpas": "p"}
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "rtmps": 443, "http": 80, "https": 443}
ONVIF_DEFAULT_PORT = 80
#: Characters left as they are when a value changed since it was taken out (a new password
#: given through the API) is put back into a query string or path.
_VALUE_SAFE = "!$'()*+,;~"
#: (position among the separated pairs, key as written, u/p, the value exactly as written)
_Pairs = tuple[tuple[int, str, str, str], ...]
#: How pairs are separated: `a=1&b=2`, `a=1;b=2`, and the XMEye path form
#: `user=admin_password=x_channel=1_stream=0.sdp`, where `_` precedes the next key.
_SEPARATORS = {"&": re.compile("&"), ";": re.compile(";"), "_": re.compile(r"_(?=[A-Za-z]+=)")}


@dataclass(frozen=True, slots=True)
class UrlForm:
    """Where credentials sit in one stream URL, so that the reader's URL has them in the same place."""

    userinfo: bool = True
    query: _Pairs = ()
    segment: int = -1  # index of the path segment (split on "/") holding `path`
    path: _Pairs = ()
    query_sep: str = "&"
    path_sep: str = "&"

    def to_json(self) -> dict[str, Any]:
        return {"i": int(self.userinfo), "q": [list(p) for p in self.query], "s": self.segment,
                "sp": [list(p) for p in self.path], "qs": self.query_sep, "ps": self.path_sep}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UrlForm:
        def pairs(items: Any) -> _Pairs:
            return tuple((int(p[0]), str(p[1]), str(p[2]), str(p[3]) if len(p) > 3 else "") for p in items)

        return cls(bool(data.get("i", 1)), pairs(data.get("q", ())), int(data.get("s", -1)), pairs(data.get("sp", ())),
                   str(data.get("qs", "&")), str(data.get("ps", "&")))


USERINFO = UrlForm()


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and password, and where they may be sent.

    `endpoints` is None only for credentials sealed before endpoints were recorded (see
    `registry.camera_credentials.secure_stored_credentials`). Neither `endpoints` nor `forms` takes
    part in equality: two pairs with the same username and password are the same credentials."""

    username: str
    password: str
    endpoints: frozenset[str] | None = field(default=None, compare=False)
    forms: Mapping[str, UrlForm] = field(default_factory=dict, compare=False)  # clean URL → form

    def __repr__(self) -> str:  # never let a password reach a log through repr()
        return f"Credentials(username={self.username!r}, password='***', endpoints={sorted(self.endpoints or ())})"

    def bound(self, endpoints: Iterable[str], forms: Mapping[str, UrlForm] | None = None) -> Credentials:
        """The same pair, belonging to `endpoints`, with `forms` (default: keep the current ones)."""
        return replace(self, endpoints=frozenset(endpoints), forms=dict(self.forms if forms is None else forms))

    def allows(self, endpoint: str | None) -> bool:
        """Whether these credentials may be sent to `endpoint` (legacy ones: anywhere, as before)."""
        return self.endpoints is None or (endpoint is not None and endpoint in self.endpoints)


class CredentialCipher:
    """Seals and opens camera credentials (and other secrets) with one Fernet key."""

    def __init__(self, key: str | bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise ConfigError(
                "secret_key must be a Fernet key (32 url-safe base64 bytes)", field="secret_key"
            ) from None

    def seal(self, credentials: Credentials) -> str:
        data: dict[str, Any] = {"u": credentials.username, "p": credentials.password}
        if credentials.endpoints is not None:
            data["e"] = sorted(credentials.endpoints)
        if credentials.forms:
            data["f"] = {url: form.to_json() for url, form in credentials.forms.items()}
        return self._fernet.encrypt(json.dumps(data, separators=(",", ":")).encode()).decode("ascii")

    def seal_text(self, text: str) -> str:
        """Seal any secret (a webhook's signing key) the way credentials are sealed."""
        return self._fernet.encrypt(text.encode()).decode("ascii")

    def open_text(self, sealed: str, **context: object) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except InvalidToken:
            raise LookoutError("a sealed secret cannot be decrypted with the configured secret_key",
                               **context) from None

    def open(self, sealed: str, camera_id: int | None = None) -> Credentials:
        try:
            data = json.loads(self._fernet.decrypt(sealed.encode("ascii")))
        except InvalidToken:
            raise LookoutError(
                "camera credentials cannot be decrypted with the configured secret_key",
                camera_id=camera_id,
            ) from None
        endpoints = frozenset(data["e"]) if "e" in data else None
        forms = {url: UrlForm.from_json(form) for url, form in data.get("f", {}).items()}
        return Credentials(data["u"], data["p"], endpoints, forms)


def load_or_create_key(path: Path) -> str:
    """The key in `path`, created (mode 0600) on first start of a single-machine install."""
    key = secret_file(path, lambda: Fernet.generate_key().decode("ascii"))
    assert key is not None
    return key


def secret_key(settings: Settings) -> str:
    """The deployment's key: `secret_key` when configured (the same on every host), else the one
    in `data_dir/secret.key` (created on a single machine's first start). Every process that
    seals or opens credentials takes it from here: the API, the workers, the alert engine."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    return load_or_create_key(settings.data_dir / "secret.key")


# -- endpoints ------------------------------------------------------------------------------------

def _endpoint(host: str, port: int) -> str:
    host = host.lower().strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def endpoint_of(url: str | None) -> str | None:
    """`host:port` of a stream URL, the scheme's default port filled in (`rtsp://H/x` → `h:554`);
    None for `file:` URLs and anything without a host."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return _endpoint(parts.hostname, port or DEFAULT_PORTS.get(parts.scheme.lower(), 0))


def onvif_endpoint(host: str | None, port: int | None) -> str | None:
    """`host:port` of an ONVIF endpoint (port 80 when none is given, as the probe assumes)."""
    return _endpoint(host, port or ONVIF_DEFAULT_PORT) if host else None


# -- taking credentials out of a URL, and putting them back -----------------------------------------

@dataclass(slots=True)
class _Parts:
    """A URL cut where credentials may sit, without re-encoding anything else."""

    head: str  # "rtsp://"
    userinfo: str | None
    hostport: str
    path: str
    query: str | None  # without "?"; None when the URL has no "?"
    fragment: str  # with its "#", or ""

    @classmethod
    def of(cls, url: str) -> _Parts | None:
        scheme, sep, rest = url.partition("://")
        if not sep or not scheme:
            return None
        end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        netloc, tail = rest[:end], rest[end:]
        userinfo, at, hostport = netloc.rpartition("@")
        hash_at = tail.find("#")
        fragment = tail[hash_at:] if hash_at >= 0 else ""
        tail = tail[:hash_at] if hash_at >= 0 else tail
        path, question, query = tail.partition("?")
        return cls(scheme + sep, userinfo if at else None, hostport, path, query if question else None, fragment)

    def text(self) -> str:
        user = f"{self.userinfo}@" if self.userinfo is not None else ""
        query = f"?{self.query}" if self.query is not None else ""
        return f"{self.head}{user}{self.hostport}{self.path}{query}{self.fragment}"


def _take_pairs(text: str) -> tuple[str, _Pairs, dict[str, str], str]:
    """Remove the credential pairs from `a=1&user=x&password=y` (or `;`-separated, or the XMEye
    `user=x_password=y_channel=1`): (what is left, where they were, role → value, separator).
    Nothing is taken when no separator leaves every credential value free of `=`: a value that
    still holds one is several pairs read as one, and guessing would break the camera's URL."""
    for sep, splitter in _SEPARATORS.items():
        pairs = splitter.split(text)
        kept: list[str] = []
        taken: list[tuple[int, str, str, str]] = []
        values: dict[str, str] = {}
        for index, pair in enumerate(pairs):
            key, eq, value = pair.partition("=")
            role = SECRET_KEYS.get(unquote(key).lower()) if eq else None
            if role is None:
                kept.append(pair)
                continue
            taken.append((index, key, role, value))
            values.setdefault(role, unquote(value))
        if not taken:
            return text, (), {}, "&"
        if all("=" not in raw for *_, raw in taken):
            return sep.join(kept), tuple(taken), values, sep
    return text, (), {}, "&"


def _put_pairs(text: str, taken: _Pairs, credentials: Credentials, sep: str) -> str:
    """Put the pairs back where they were, each value as it was written (a camera that reads
    `pwd=p%2Bq` or `password=a@b` gets exactly that), or newly encoded when it changed since."""
    pairs = _SEPARATORS.get(sep, _SEPARATORS["&"]).split(text) if text else []
    for index, key, role, raw in sorted(taken):
        value = credentials.username if role == "u" else credentials.password
        written = raw if raw and unquote(raw) == value else quote(value, safe=_VALUE_SAFE)
        pairs.insert(min(index, len(pairs)), f"{key}={written}")
    return sep.join(pairs)


def split_userinfo(url: str) -> tuple[str, Credentials | None]:
    """`rtsp://u:p@host/x`, `rtsp://host/x?user=u&password=p` or `rtsp://host/user=u&password=p&...`
    → (the URL without them, Credentials(u, p) bound to the URL's endpoint, remembering the
    form). URLs without credentials pass unchanged."""
    parts = _Parts.of(url)
    if parts is None or parts.head.lower().startswith("file:"):
        return url, None
    values: dict[str, str] = {}
    form = UrlForm(userinfo=False)
    if parts.userinfo is not None:
        user, _, password = parts.userinfo.partition(":")
        values = {"u": unquote(user), "p": unquote(password)}
        parts.userinfo = None
        form = replace(form, userinfo=True)
    if parts.query:
        parts.query, taken, found, sep = _take_pairs(parts.query)
        if taken:
            form = replace(form, query=taken, query_sep=sep)
            values = {**found, **values}
            if not parts.query:
                parts.query = None
    segments = parts.path.split("/")
    for index, segment in enumerate(segments):
        if "=" not in segment:
            continue
        rest, taken, found, sep = _take_pairs(segment)
        if taken:
            segments[index] = rest
            parts.path = "/".join(segments)
            form = replace(form, segment=index, path=taken, path_sep=sep)
            values = {**found, **values}
            break
    if not values:
        return url, None
    clean = parts.text()
    forms = {} if form == USERINFO else {clean: form}
    endpoint = endpoint_of(clean)
    return clean, Credentials(values.get("u", ""), values.get("p", ""),
                              frozenset([endpoint] if endpoint else []), forms)


def form_for(url: str, credentials: Credentials) -> UrlForm:
    """The form credentials take in `url`: the one recorded for that URL, else one recorded for
    another URL of the same endpoint (the path or query changed, the device did not), else userinfo."""
    form = credentials.forms.get(url)
    if form is not None:
        return form
    endpoint = endpoint_of(url)
    for other, candidate in credentials.forms.items():
        if endpoint_of(other) == endpoint:
            return candidate
    return USERINFO


def join_userinfo(url: str, credentials: Credentials | None) -> str:
    """The inverse of `split_userinfo`: the URL a reader opens, credentials put back in, in
    the form they came in. Only ever handed to the reader, never stored or shown.

    Credentials go only to an endpoint they belong to: for any other the URL is returned
    without them (the camera then answers 401, and its status says so)."""
    if credentials is None or url.startswith("file:"):
        return url
    parts = _Parts.of(url)
    if parts is None:
        return url
    endpoint = endpoint_of(url)
    if not credentials.allows(endpoint):
        log.warning("credentials_withheld", extra={"endpoint": endpoint,
                                                   "reason": "the URL is not at the host and port they were given for"})
        return url
    form = form_for(url, credentials)
    if form.userinfo:
        parts.userinfo = f"{quote(credentials.username, safe='')}:{quote(credentials.password, safe='')}"
    if form.query:
        parts.query = _put_pairs(parts.query or "", form.query, credentials, form.query_sep)
    if form.path:
        segments = parts.path.split("/")
        if 0 <= form.segment < len(segments):
            segments[form.segment] = _put_pairs(segments[form.segment], form.path, credentials, form.path_sep)
            parts.path = "/".join(segments)
        else:  # the path is shorter now: the pairs go to the query, where most devices read them too
            parts.query = _put_pairs(parts.query or "", form.path, credentials, form.query_sep)
    return parts.text()
