"""The FastAPI application: routers, error mapping, metrics."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import docs
from api.feed_hub import FeedHub
from api.metrics import AlertCollector, HttpMetrics, RegistryCollector
from api.middleware import BodyGuard, SecurityHeaders
from api.routes import (
    alert_stream,
    alerts,
    audit,
    cameras,
    health,
    onvif,
    stats,
    subscriptions,
    suppressions,
    units,
    users,
)
from api.services import Services
from config.errors import LookoutError

log = logging.getLogger("lookout.api")


def create_app(services: Services) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """The process's one reader of the alert feed runs while the app does."""
        app.state.feed_hub.start()
        yield
        app.state.feed_hub.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="Lookout",
        summary="One camera registry for a county's networks; smoke, flame and crowd alerts up the command chain.",
        version="0.1.0",
        docs_url=None,  # api/docs.py serves Swagger UI from local files
        redoc_url=None,  # ReDoc would load from a public CDN
    )
    app.state.services = services
    app.state.feed_hub = FeedHub(services.sessions, services.redis)
    app.state.metrics_registry = CollectorRegistry()
    app.state.metrics_registry.register(RegistryCollector(services))
    app.state.metrics_registry.register(AlertCollector(services))
    # outermost last: headers on every answer, then the Host check, the access log and metrics,
    # and the body guard right before the routes (its refusals are logged and counted)
    app.add_middleware(BodyGuard, services=lambda: app.state.services)
    app.middleware("http")(HttpMetrics(app.state.metrics_registry).middleware)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=services.settings.security.allowed_hosts,
                       www_redirect=False)
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(LookoutError)
    async def lookout_error(request: Request, exc: LookoutError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status >= 500:
            log.error("request_failed", extra={"path": request.url.path, **exc.to_dict()})
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)

    @app.exception_handler(IntegrityError)
    async def integrity_error(request: Request, exc: IntegrityError) -> JSONResponse:
        log.info("integrity_conflict", extra={"path": request.url.path, "error": str(exc.orig)[:300]})
        return JSONResponse({"detail": "the change conflicts with existing data (a unique value is taken)"}, 409)

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> JSONResponse:
        log.warning("data_rejected_by_database", extra={"path": request.url.path, "error": str(exc.orig)[:300]})
        return JSONResponse({"detail": "a value is out of range or too long for its field"}, 422)

    @app.exception_handler(OperationalError)
    async def database_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database_unavailable", extra={"path": request.url.path, "error": str(exc.orig)[:300]})
        return JSONResponse({"detail": "database unavailable, try again"}, 503)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return JSONResponse({"detail": f"invalid request: {summary}", "errors": errors}, 422)

    app.include_router(docs.router)
    for module in (health, users, units, onvif, cameras, suppressions, alert_stream, alerts, subscriptions, stats,
                   audit):
        app.include_router(module.router)
    return app


class StartingApp:
    """What uvicorn serves from the first moment of `lookout serve`: 503 naming what serve still
    waits for (the database, Redis) until `hand_over` gives it the real app, then every request
    and the app's lifespan pass to that one.

    Serve cannot build its app before its database answers, but a load balancer and an operator
    must be told why meanwhile, on the same port, and the port must not go away at the switch."""

    def __init__(self, states: Mapping[str, str]) -> None:
        self.states = states  # dependency → "ok" or "waiting: <error>", kept by config.dependencies
        self.app: ASGIApp | None = None
        self._placeholder = SecurityHeaders(self._unavailable)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_ready = threading.Event()
        self._inner: tuple[asyncio.Queue[Message], asyncio.Queue[Message], asyncio.Task[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013, "reason": "starting: try again later"})
        else:
            await self._placeholder(scope, receive, send)

    async def _unavailable(self, scope: Scope, receive: Receive, send: Send) -> None:
        missing = [name for name, state in self.states.items() if state != "ok"]
        if scope["path"] == "/healthz":
            body: dict[str, Any] = {"status": "starting", **self.states}
        else:
            body = {"detail": "starting: waiting for " + " and ".join(missing) if missing else "starting"}
        await JSONResponse(body, 503, headers={"Retry-After": "2"})(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._loop = asyncio.get_running_loop()
                self._loop_ready.set()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def hand_over(self, app: ASGIApp, stop_event: threading.Event) -> bool:
        """From another thread: start `app`'s lifespan in the server's loop, then pass every
        request to it. False when `stop_event` came first (the server never got going)."""
        while not self._loop_ready.wait(0.1):
            if stop_event.is_set():
                return False
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._open(app), self._loop).result()
        return True

    async def _open(self, app: ASGIApp) -> None:
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        outbox: asyncio.Queue[Message] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        task = asyncio.create_task(app(scope, inbox.get, outbox.put))
        await inbox.put({"type": "lifespan.startup"})
        reply = await _reply(outbox, task)
        if reply.get("type") != "lifespan.startup.complete":
            raise RuntimeError(f"the app did not start: {reply.get('message', reply)}")
        self._inner = (inbox, outbox, task)
        self.app = app

    async def _close(self) -> None:
        if self._inner is None:
            return
        (inbox, outbox, task), self._inner = self._inner, None
        await inbox.put({"type": "lifespan.shutdown"})
        await _reply(outbox, task)
        await asyncio.gather(task, return_exceptions=True)


async def _reply(outbox: asyncio.Queue[Message], task: asyncio.Task[None]) -> Message:
    """The lifespan's answer, or an empty one when its task ended without answering."""
    getter = asyncio.ensure_future(outbox.get())
    await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
    if getter.done():
        return getter.result()
    getter.cancel()
    return {"type": "lifespan.failed", "message": repr(task.exception()) if not task.cancelled() else "cancelled"}
