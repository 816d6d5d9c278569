"""Validated field types shared by every input path (API bodies, query strings, CSV rows).

One definition each, so a value the API refuses is refused the same way in a CSV import.
Text fields reject control characters and unpaired surrogates: PostgreSQL cannot store NUL,
and nothing a technician types needs a control character.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, StringConstraints

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
DB_INT_MAX = 2**31 - 1  # ids are INTEGER columns: 32-bit on PostgreSQL
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "file")


def _clean(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode") from None
    return value


def _stream_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme.lower() not in STREAM_SCHEMES:
        raise ValueError(f"URL scheme must be one of {', '.join(STREAM_SCHEMES)}")
    if parts.scheme.lower() == "file":
        if not parts.path:
            raise ValueError("file: URL needs a path")
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
Host = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), AfterValidator(_host)]
Port = Annotated[int, Field(ge=1, le=65535)]
DbId = Annotated[int, Field(ge=1, le=DB_INT_MAX)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
DeviceId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\d{20}$")]
UnitCode = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\d{12}$")]
