"""Camera credentials: encrypted at rest, never returned, never logged.

Credentials are a (username, password) pair sealed with Fernet (AES-128-CBC + HMAC-SHA256)
under the deployment's secret key. Stream URLs often arrive with the password inside
(`rtsp://admin:12345@10.0.0.7/...`); `split_userinfo` moves it out before the URL is stored.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from cryptography.fernet import Fernet, InvalidToken

from config.errors import ConfigError, LookoutError


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never let a password reach a log through repr()
        return f"Credentials(username={self.username!r}, password='***')"


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
        raw = json.dumps({"u": credentials.username, "p": credentials.password}).encode()
        return self._fernet.encrypt(raw).decode("ascii")

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
        return Credentials(data["u"], data["p"])


def load_or_create_key(path: Path) -> str:
    """The key in `path`, created (mode 0600) on first start of a single-machine install."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def split_userinfo(url: str) -> tuple[str, Credentials | None]:
    """`rtsp://u:p@host/x` → (`rtsp://host/x`, Credentials(u, p)); URLs without userinfo pass."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, Credentials(unquote(parts.username or ""), unquote(parts.password or ""))


def join_userinfo(url: str, credentials: Credentials | None) -> str:
    """The inverse of `split_userinfo`: the URL a reader opens, credentials put back in.
    Only ever handed to the reader, never stored or shown."""
    if credentials is None or url.startswith("file:"):
        return url
    parts = urlsplit(url)
    netloc = f"{quote(credentials.username, safe='')}:{quote(credentials.password, safe='')}@{parts.netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
