"""Validated field types shared by every input path (API bodies, query strings, CSV rows).

One definition each, so a value the API refuses is refused the same way in a CSV import.

- Single-line text (names, addresses, owners, tags, assignees, reasons, URLs) refuses every
  control character: C0 (tab, CR and LF included: a CR LF in a stream URL became an injected
  RTSP header line), DEL, C1, the Unicode line and paragraph separators, and the bidirectional
  overrides and isolates that make a name read differently from what it is. PostgreSQL cannot
  store NUL, and nothing a technician types on one line needs any of them.
- `MultilineText` (a resolved alert's feedback) keeps line breaks (CR LF and CR become LF) and
  tabs, and refuses every other control character.
- Codes are ASCII digits only: `\\d` would also take full-width and other scripts' digits, and
  `３３０１…` would be a second unit next to `3301…`.
- A `file:` URL is `file:///absolute/path` and nothing else (`file_url_path`; where it may
  point is `ingest.media_paths`).
- A time-of-day window (`ArmedWindow`: a camera's armed hours, a subscription's hours) is
  "HH:MM" to "HH:MM" of local time, the way the centres' duty rosters write them; an end before
  the start runs past midnight. Stored as minutes of the day (`minutes`, undone by `clock`).
- A paging cursor (`encode_cursor` / `decode_cursor`) is opaque to clients: the last id of the
  page, so the next page starts after it however rows are added or deleted meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated
from urllib.parse import unquote, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from config.errors import InvalidInput

#: C0 (with tab, LF, CR), DEL, C1, line/paragraph separators, bidi embeddings/overrides/isolates
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: the same, less LF and tab: what multi-line text (pasted from documents and spreadsheets) may not
#: hold once its line breaks are normalised
_CONTROL_MULTILINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
DB_INT_MAX = 2**31 - 1  # ids are INTEGER columns: 32-bit on PostgreSQL
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "file")
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$|^24:00$")  # [0-9]: \d takes every script's digits


def has_control_characters(text: str) -> bool:
    """Whether `text` holds a character no single-line field may hold (for values stored
    before these rules, which the worker checks before it sends them anywhere)."""
    return _CONTROL.search(text) is not None


def _valid_unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode") from None
    return value


def _clean(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed")
    return _valid_unicode(value)


def _clean_multiline(value: str) -> str:
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    if _CONTROL_MULTILINE.search(value):
        raise ValueError("control characters other than line breaks and tabs are not allowed")
    return _valid_unicode(value)


def file_url_path(url: str) -> str:
    """The absolute path a `file:` URL names; ValueError (with the reason) when it is anything
    but `file:///absolute/path`."""
    if not url[:5].lower() == "file:":
        raise ValueError("not a file: URL")
    rest = url[5:]
    if not rest.startswith("///"):
        raise ValueError("file: URL must be file:///absolute/path (no host, no other protocol inside)")
    if "?" in rest or "#" in rest:
        raise ValueError("file: URL must not have a query or a fragment")
    try:
        path = unquote(rest[2:], errors="strict")
    except UnicodeDecodeError:
        raise ValueError("file: URL path is not valid UTF-8 once decoded") from None
    if has_control_characters(path):
        raise ValueError("file: URL path must not contain control characters")
    if any(part in (".", "..") for part in path.split("/")):
        raise ValueError("file: URL path must not contain . or .. segments")
    return path


def _stream_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme.lower() not in STREAM_SCHEMES:
        raise ValueError(f"URL scheme must be one of {', '.join(STREAM_SCHEMES)}")
    if parts.scheme.lower() == "file":
        file_url_path(value)  # ValueError: why it is not file:///absolute/path
        return value
    if not parts.hostname:
        raise ValueError("URL needs a host")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("URL port must be a number from 1 to 65535") from None
    if " " in value:
        raise ValueError("URL must not contain spaces")
    return value


def _host(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9.\-:\[\]]+", value):
        raise ValueError("host must be a hostname or an IP address")
    return value


Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500), AfterValidator(_clean)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(_clean)]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_clean)
]
Tag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[^,;|]+$"),
    AfterValidator(_clean),
]
StreamUrl = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000), AfterValidator(_clean),
    AfterValidator(_stream_url),
]
#: one line of free text up to 4000 characters: an alert's reason
Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000), AfterValidator(_clean)
]
#: several lines of free text: a resolved alert's feedback
MultilineText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=8000), AfterValidator(_clean_multiline)
]
#: a camera's username: sent in RTSP/HTTP Digest headers, where a CR LF forges a header line
CameraUsername = Annotated[str, StringConstraints(max_length=128), AfterValidator(_clean)]
Host = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), AfterValidator(_host)]
Port = Annotated[int, Field(ge=1, le=65535)]
DbId = Annotated[int, Field(ge=1, le=DB_INT_MAX)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
# [0-9], not \d: both Python's and pydantic-core's \d take every script's digits
DeviceId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{20}$")]
UnitCode = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{12}$")]


#: a window of local time of day, "HH:MM" to "HH:MM" ("24:00": the end of the day); an end before
#: the start runs past midnight (the model has no docstring: it would show in the OpenAPI schema)
class ArmedWindow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: Annotated[str, Field(pattern=_CLOCK.pattern, examples=["08:00"])]
    end: Annotated[str, Field(pattern=_CLOCK.pattern, examples=["18:00"], description="before start: past midnight")]


def minutes(clock: str) -> int:
    """The minute of the day of an "HH:MM" (0..1440)."""
    hours, mins = clock.split(":")
    return int(hours) * 60 + int(mins)


def clock(minute_of_day: int) -> str:
    """The "HH:MM" of a minute of the day: `minutes` undone."""
    return f"{minute_of_day // 60:02d}:{minute_of_day % 60:02d}"


def encode_cursor(last_id: int) -> str:
    """The cursor of the page after the row `last_id`."""
    return base64.urlsafe_b64encode(f"c{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The row id a cursor of `encode_cursor` holds; InvalidInput (on `cursor`) for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("c"):
            raise ValueError
        value = int(raw[1:])
        if not 0 <= value <= DB_INT_MAX:
            raise ValueError
        return value
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidInput("cursor is not one this API gave out", field="cursor") from None
