"""The FastAPI application: routers, error mapping, metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.middleware.trustedhost import TrustedHostMiddleware

from api import docs
from api.alerting.hub import FeedHub
from api.metrics import AlertCollector, HttpMetrics, RegistryCollector
from api.middleware import BodyGuard, SecurityHeaders
from api.routes import alert_stream, alerts, audit, cameras, health, onvif, stats, subscriptions, units, users
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
    for module in (health, users, units, onvif, cameras, alert_stream, alerts, subscriptions, stats, audit):
        app.include_router(module.router)
    return app
