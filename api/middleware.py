"""The HTTP edge: what every request passes before a route sees it, and what every answer carries.

Both middlewares are plain ASGI (not Starlette's BaseHTTPMiddleware), so streaming answers such
as the SSE feed pass through untouched and nothing is buffered.

`BodyGuard` exists because FastAPI reads and parses a whole body (JSON into memory, a multipart
form into temporary files) before any dependency runs: without it a 150 MB JSON body or a
300 MB upload costs the server before the 401 for a missing token. It refuses a body from a
caller without a valid bearer token before reading a byte of it, and caps every body by its
declared length up front and by counting the bytes it streams (chunked bodies declare none).

`SecurityHeaders` adds the headers browsers need to treat answers as inert data (no sniffing,
no framing, no referrer, no caching of API answers) and turns absolute redirects into relative
ones, so that no redirect ever points at a host the client named in its Host header.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.services import Services
from config.errors import Forbidden, LookoutError, Unauthorized
from config.security import SecuritySettings
from registry.users import ALERT_HANDLERS, CAMERA_WRITERS, Principal, Role, principal_for_token

log = logging.getLogger("lookout.http")

API_PREFIX = "/api/v1/"
#: the one route that takes a body from a caller without a token: signing in
SIGN_IN_PATHS = frozenset({"/api/v1/auth/token"})
#: routes that take a file upload whatever the content type says, and the evidence route
UPLOAD_PATHS = frozenset({"/api/v1/cameras/import"})
EVIDENCE_PATH = re.compile(r"^/api/v1/alerts/[^/]+/resolve/?$")
#: room for the other fields and the multipart framing of an evidence form (feedback ≤ 8000 chars)
FORM_OVERHEAD = 64 * 1024


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes its limit. An `HTTPException`, so that
    FastAPI's body parsing passes it on (it turns other errors into a 400) and Starlette's
    exception middleware answers it as a 413."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(413, body_limit_message(limit, setting))
        self.limit = limit
        self.setting = setting


def body_limit_message(limit: int, setting: str) -> str:
    size = f"{limit / 2**20:g} MiB" if limit >= 2**20 else f"{limit / 1024:g} KiB"
    return f"request body is larger than the limit of {limit} bytes ({size}; setting security.{setting})"


def body_limit(settings: SecuritySettings, path: str) -> tuple[int, str]:
    """The byte limit of a request body and the setting it comes from: the evidence form, the
    CSV import, and everything else at `max_json_bytes` whatever its content type says (a JSON
    route reads a body sent as `multipart/form-data` into memory all the same)."""
    if EVIDENCE_PATH.match(path):
        return settings.max_evidence_bytes + FORM_OVERHEAD, "max_evidence_bytes"
    if path in UPLOAD_PATHS:
        return settings.max_upload_bytes, "max_upload_bytes"
    return settings.max_json_bytes, "max_json_bytes"


def _upload_roles(path: str) -> frozenset[Role] | None:
    """Who may send the body of an upload route at all: anyone else is refused (403) before a
    byte of a file that may be hundreds of MiB is read; None for other routes."""
    if path in UPLOAD_PATHS:
        return CAMERA_WRITERS
    if EVIDENCE_PATH.match(path):
        return ALERT_HANDLERS
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


async def _answer(send: Send, status: int, body: dict[str, Any], close: bool,
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if close:  # the body was not read: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": data})


class BodyGuard:
    """Refuse anonymous bodies unread, and cap every body (see the module's docstring)."""

    def __init__(self, app: ASGIApp, services: Callable[[], Services]) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length_text = _header(scope, b"content-length")
        chunked = _header(scope, b"transfer-encoding") is not None
        try:
            length = int(length_text) if length_text is not None else None
            if length is not None and length < 0:
                raise ValueError(length_text)
        except ValueError:
            await _answer(send, 400, {"detail": "Content-Length is not a byte count"}, close=True)
            return
        if not chunked and not length:  # no body: nothing to guard
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        services = self.services()
        if path.startswith(API_PREFIX) and path not in SIGN_IN_PATHS:
            refusal = await self._refusal(scope, services)
            if refusal is not None:
                status, body = refusal
                extra = [(b"www-authenticate", b"Bearer")] if status == 401 else None
                log.info("request_body_refused", extra={"path": path, "status": status})
                await _answer(send, status, body, close=True, extra=extra)
                return
        limit, setting = body_limit(services.settings.security, path)
        if length is not None and length > limit:
            log.info("request_body_refused", extra={"path": path, "declared": length, "limit": limit})
            await _answer(send, 413, {"detail": body_limit_message(limit, setting), "limit": limit}, close=True)
            return
        await self._counted(scope, receive, send, limit, setting)

    async def _refusal(self, scope: Scope, services: Services) -> tuple[int, dict[str, Any]] | None:
        """Why this caller may not send a body (status, body), or None when its token is valid."""
        authorization = _header(scope, b"authorization") or ""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return 401, Unauthorized("missing bearer token").to_dict()

        def check() -> Principal:
            with services.sessions() as session:
                return principal_for_token(session, token.strip())

        try:
            principal = await anyio.to_thread.run_sync(check)
        except LookoutError as exc:
            return exc.status, exc.to_dict()
        except Exception as exc:  # the database is away: say so, and still read nothing
            log.error("request_auth_unavailable", extra={"error": f"{type(exc).__name__}: {str(exc)[:200]}"})
            return 503, {"detail": "database unavailable, try again"}
        roles = _upload_roles(scope["path"])
        if roles is not None and principal.role not in roles:
            return 403, Forbidden(f"role {principal.role.value} may not upload here; needs "
                                  f"{', '.join(sorted(r.value for r in roles))}").to_dict()
        return None

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int, setting: str) -> None:
        """Pass the request on, counting the body bytes it streams; past `limit` the app's next
        read raises `BodyTooLarge` (a 413), and no further byte is read."""
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    log.info("request_body_refused", extra={"path": scope["path"], "received": received,
                                                            "limit": limit})
                    raise BodyTooLarge(limit, setting)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if received > limit:  # stop the connection: the rest of the body stays unread
                    message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge as exc:  # a route read the stream itself and let the error through
            if started:
                raise
            await _answer(send, 413, {"detail": exc.detail, "limit": exc.limit}, close=True)


# -- answers ------------------------------------------------------------------------------------
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#: /docs runs Swagger UI from the service's own files; no inline script, nothing from elsewhere
DOCS_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; font-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
               "form-action 'none'")
DOCS_PREFIX = "/docs"


class SecurityHeaders:
    """Add the security headers to every HTTP answer (a route's own value of one wins) and make
    every redirect relative (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        docs = path == DOCS_PREFIX or path.startswith(DOCS_PREFIX + "/")
        added = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"cross-origin-resource-policy", b"same-origin"),
            (b"content-security-policy", (DOCS_POLICY if docs else API_POLICY).encode()),
        ]
        if not docs:
            added.append((b"cache-control", b"no-store"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {key.lower() for key, _ in headers}
                headers += [(key, value) for key, value in added if key not in present]
                if 300 <= message["status"] < 400:
                    headers = [(key, relative_location(value) if key.lower() == b"location" else value)
                               for key, value in headers]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def relative_location(value: bytes) -> bytes:
    """`http://any-host/x/y?z` → `/x/y?z`. The service never redirects to another origin, and an
    absolute URL built from the Host header would send a client wherever that header said. A
    leading run of slashes becomes one, so `//evil.example/` cannot become a protocol-relative
    URL either."""
    text = value.decode("latin-1")
    match = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:(?://[^/?#\\]*)?(.*)$", text)
    if match is None and not text.startswith(("/", "\\")):
        return value  # a relative reference ("next", "?page=2"): it stays on this origin
    rest = match.group(1) if match else text
    return ("/" + rest.lstrip("/\\")).encode("latin-1")
