"""Structured logs: one JSON object per line, an `event` name plus context fields.

Call sites log an event name and pass context through `extra`, e.g.
`log.info("camera_created", extra={"camera_id": 7, "unit_id": 3})`. Secrets never reach a
log: nothing logs request bodies, and camera URLs are stored without their userinfo.

Bearer tokens do travel in URLs: browsers cannot set headers on a WebSocket or an
EventSource, so consoles pass `?access_token=lk_...`, and uvicorn logs the WebSocket's path
with its query. `RedactSecrets`, a filter on the one root handler, takes out every token-shaped
string (`lk_...`), every `access_token=` value and every `Bearer ...` credential from a record's
message, arguments, extra fields and exception text before any formatter sees it; the
formatters pass their finished line through the same `redact` once more.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "color_message"}

REDACTED = "[redacted]"
_SECRETS = re.compile(
    r"(?<![A-Za-z0-9])lk_[A-Za-z0-9_\-]+"  # a Lookout token, whole or cut short
    r"|(?<=access_token=)[^&\s\"'#\\]+"  # a token in a query string, whatever its shape
    r"|(?<=access_token%3D)[^&\s\"'#\\]+",
)
_BEARER = re.compile(r"(?i)\b(bearer(?:\s|%20)+)[^\s\"',;\\]+")  # an Authorization header's credential
_HINTS = ("lk_", "access_token", "bearer")  # cheap test (of the lower-cased text) before the regexes


def redact(text: str) -> str:
    """`text` without any token: `lk_...`, `access_token=...`, `Bearer ...` become [redacted]."""
    lowered = text.lower()
    if not any(hint in lowered for hint in _HINTS):
        return text
    return _BEARER.sub(r"\1" + REDACTED, _SECRETS.sub(REDACTED, text))


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(item) for item in value)
    return value


class RedactSecrets(logging.Filter):
    """Takes tokens out of a record (message and arguments, extra fields, exception text) in
    place, so that every handler after it gets the clean record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: let the formatter report it
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and not key.startswith("_"):
                record.__dict__[key] = _redact_value(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info or record.exc_text:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}"
            for k, v in record.__dict__.items()
            if k not in _STANDARD and not k.startswith("_")
        )
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()} {extras}"
        if record.exc_info or record.exc_text:
            line += "\n" + (record.exc_text or self.formatException(record.exc_info))  # type: ignore[arg-type]
        return redact(line.rstrip())


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route every logger (ours, uvicorn's) through one structured handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our middleware logs requests
