"""The console's live alert feed: `GET /api/v1/alerts/stream` (Server-Sent Events) and
`/api/v1/alerts/ws` (WebSocket), inside the caller's unit scope.

Both resume without a gap: SSE from the standard `Last-Event-ID` header (or `?after=`), the
WebSocket from `?after=`; each message carries its change id. Browsers cannot set headers on
either, so the bearer token may also come as `?access_token=` (config/logging.py keeps it out
of every log line).

A feed ends when its token stops being valid (sign-out, a new password, the person disabled,
the token expired: the hub re-checks every 2 s): the WebSocket closes with 4401, SSE sends an
`event: revoked` and ends (EventSource's reconnect then gets 401). When the person's unit
changes, the WebSocket closes with 4403 and SSE sends `event: moved`: reconnect for the new
scope.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from alerts.feed_items import FeedFilter, FeedItem
from api.deps import ServicesDep
from api.feed_hub import BEHIND, MOVED, REVOKED, FeedHub, Listener
from api.services import Services
from config.alerting import SEVERITIES, Severity
from config.errors import InvalidInput, Unauthorized
from registry.fields import DB_INT_MAX
from registry.users import Principal, principal_for_token, token_digest

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
KEEPALIVE_SECONDS = 15.0
CLOSE_CODES = {REVOKED: 4401, MOVED: 4403}  # WebSocket close codes of a feed ended by the hub
Kinds = Annotated[list[str], Query(max_length=16)]
After = Annotated[int | None, Query(ge=0, le=DB_INT_MAX, description="resume after this change id")]
Token = Annotated[str | None, Query(max_length=200, description="bearer token, for clients that cannot set headers")]


class FeedEnded(Exception):
    """The hub ended this feed: its token is no longer valid (REVOKED) or its person moved."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _principal(services: Services, authorization: str | None, access_token: str | None) -> tuple[Principal, str]:
    """The caller, and the digest of their token (the hub re-checks it while the feed is open)."""
    token = access_token
    if authorization and authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
    if not token:
        raise Unauthorized("missing bearer token")
    with services.sessions() as session:
        return principal_for_token(session, token), token_digest(token)


def _filter(user: Principal, kinds: list[str], min_severity: str | None, addressed_only: bool) -> FeedFilter:
    return FeedFilter(user.scope, user.unit_id, frozenset(kinds),
                      0 if min_severity is None else SEVERITIES.index(min_severity), addressed_only)


async def _follow(hub: FeedHub, flt: FeedFilter, digest: str, after: int | None) -> AsyncIterator[FeedItem | None]:
    """The backlog after `after` (when given), then live changes; None every keep-alive period.
    Ends when the listener is dropped for falling behind (the client resumes from its last id);
    raises FeedEnded when the hub ended it for its token or its person's unit."""
    listener: Listener = hub.add(flt, digest)
    try:
        sent = until = hub.last_id
        if after is not None:
            sent = after
            while sent < until:  # catch up from the database, a page at a time
                page, sent = await run_in_threadpool(hub.backlog, flt, sent, until)
                if listener.dropped and listener.reason != BEHIND:
                    raise FeedEnded(listener.reason or REVOKED)
                for item in page:
                    yield item
        while True:
            try:
                item = await asyncio.wait_for(listener.queue.get(), KEEPALIVE_SECONDS)
            except asyncio.TimeoutError:
                yield None
                continue
            if item is None:
                if listener.reason != BEHIND:
                    raise FeedEnded(listener.reason or REVOKED)
                return
            if item.id > sent:
                sent = item.id
                yield item
    finally:
        hub.remove(listener)


@router.get("/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "one `alert` event per change"}})
async def alert_stream(
    request: Request,
    services: ServicesDep,
    kind: Kinds = [],  # noqa: B006
    min_severity: Severity | None = None,
    addressed_only: Annotated[bool, Query(description="only alerts sent to your own unit (escalated...)")] = False,
    after: After = None,
    access_token: Token = None,
    authorization: Annotated[str | None, Header()] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """Server-Sent Events: `id` is the change id, `data` the change with the alert after it."""
    user, digest = await run_in_threadpool(_principal, services, authorization, access_token)
    if last_event_id is not None:
        if not (last_event_id.isascii() and last_event_id.isdigit()) or int(last_event_id) > DB_INT_MAX:
            raise InvalidInput("Last-Event-ID must be a change id", field="Last-Event-ID")
        after = int(last_event_id)
    hub: FeedHub = request.app.state.feed_hub
    flt = _filter(user, kind, min_severity, addressed_only)

    async def body() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        try:
            async for item in _follow(hub, flt, digest, after):
                yield ": keep-alive\n\n" if item is None else f"id: {item.id}\nevent: alert\ndata: {item.data}\n\n"
        except FeedEnded as ended:
            detail = ("your token is no longer valid: sign in again" if ended.reason == REVOKED
                      else "your unit changed: reconnect")
            yield f"event: {ended.reason}\ndata: {json.dumps({'detail': detail})}\n\n"

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.websocket("/ws")
async def alert_socket(
    websocket: WebSocket,
    kind: Kinds = [],  # noqa: B006
    min_severity: Severity | None = None,
    addressed_only: bool = False,
    after: After = None,
    access_token: Token = None,
) -> None:
    """WebSocket: one JSON text message per change (with its `change_id`)."""
    services: Services = websocket.app.state.services
    try:
        user, digest = await run_in_threadpool(_principal, services, websocket.headers.get("authorization"),
                                               access_token)
    except Unauthorized as exc:
        # accepted, then closed: a browser sees the close code (4401: sign in again), never the
        # status of a refused handshake
        await websocket.accept()
        await websocket.close(code=4401, reason=exc.message)
        return
    await websocket.accept()
    hub: FeedHub = websocket.app.state.feed_hub
    try:
        async for item in _follow(hub, _filter(user, kind, min_severity, addressed_only), digest, after):
            if item is not None:
                await websocket.send_text(item.data)
        await websocket.close(code=1013, reason="too far behind: reconnect with ?after=<last change_id>")
    except FeedEnded as ended:
        await websocket.close(code=CLOSE_CODES.get(ended.reason, 4401),
                              reason="token no longer valid" if ended.reason == REVOKED else "your unit changed: reconnect")
    except WebSocketDisconnect:
        return
