"""The console's live alert feed: `GET /api/v1/alerts/stream` (Server-Sent Events) and
`/api/v1/alerts/ws` (WebSocket), inside the caller's unit scope.

Both resume without a gap: SSE from the standard `Last-Event-ID` header (or `?after=`), the
WebSocket from `?after=`; each message carries its change id. Browsers cannot set headers on
either, so the bearer token may also come as `?access_token=`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.alerting.hub import FeedFilter, FeedHub, FeedItem, Listener
from api.auth import Principal, principal_for_token
from api.deps import ServicesDep
from api.services import Services
from config.alerting import SEVERITIES, Severity
from config.errors import InvalidInput, Unauthorized
from ingest.fields import DB_INT_MAX

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
KEEPALIVE_SECONDS = 15.0
Kinds = Annotated[list[str], Query(max_length=16)]
After = Annotated[int | None, Query(ge=0, le=DB_INT_MAX, description="resume after this change id")]
Token = Annotated[str | None, Query(max_length=200, description="bearer token, for clients that cannot set headers")]


def _principal(services: Services, authorization: str | None, access_token: str | None) -> Principal:
    token = access_token
    if authorization and authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
    if not token:
        raise Unauthorized("missing bearer token")
    with services.sessions() as session:
        return principal_for_token(session, token)


def _filter(user: Principal, kinds: list[str], min_severity: str | None, addressed_only: bool) -> FeedFilter:
    return FeedFilter(user.scope, user.unit_id, frozenset(kinds),
                      0 if min_severity is None else SEVERITIES.index(min_severity), addressed_only)


async def _follow(hub: FeedHub, flt: FeedFilter, after: int | None) -> AsyncIterator[FeedItem | None]:
    """The backlog after `after` (when given), then live changes; None every keep-alive period.
    Ends when the listener is dropped for falling behind (the client resumes from its last id)."""
    listener: Listener = hub.add(flt)
    try:
        sent = until = hub.last_id
        if after is not None:
            sent = after
            while sent < until:  # catch up from the database, a page at a time
                page, sent = await run_in_threadpool(hub.backlog, flt, sent, until)
                for item in page:
                    yield item
        while True:
            try:
                item = await asyncio.wait_for(listener.queue.get(), KEEPALIVE_SECONDS)
            except asyncio.TimeoutError:
                yield None
                continue
            if item is None:
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
    user = await run_in_threadpool(_principal, services, authorization, access_token)
    if last_event_id is not None:
        if not last_event_id.isdigit() or int(last_event_id) > DB_INT_MAX:
            raise InvalidInput("Last-Event-ID must be a change id", field="Last-Event-ID")
        after = int(last_event_id)
    hub: FeedHub = request.app.state.feed_hub
    flt = _filter(user, kind, min_severity, addressed_only)

    async def body() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        async for item in _follow(hub, flt, after):
            yield ": keep-alive\n\n" if item is None else f"id: {item.id}\nevent: alert\ndata: {item.data}\n\n"

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
        user = await run_in_threadpool(_principal, services, websocket.headers.get("authorization"), access_token)
    except Unauthorized as exc:
        await websocket.close(code=4401, reason=exc.message)
        return
    await websocket.accept()
    hub: FeedHub = websocket.app.state.feed_hub
    try:
        async for item in _follow(hub, _filter(user, kind, min_severity, addressed_only), after):
            if item is not None:
                await websocket.send_text(item.data)
        await websocket.close(code=1013, reason="too far behind: reconnect with ?after=<last change_id>")
    except WebSocketDisconnect:
        return
