"""`/healthz` and `/metrics`: what a load balancer and Prometheus ask."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.deps import ServicesDep
from config.errors import Unauthorized

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz(services: ServicesDep) -> JSONResponse:
    """200 when the database and Redis answer; 503 naming what does not."""
    checks: dict[str, str] = {}
    try:
        with services.sessions() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # report, never raise: this is the health check
        checks["database"] = f"error: {type(exc).__name__}"
    if services.redis is None:
        checks["redis"] = "not configured"
    else:
        try:
            services.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    healthy = all(v in ("ok", "not configured") for v in checks.values())
    return JSONResponse({"status": "ok" if healthy else "unavailable", **checks}, status_code=200 if healthy else 503)


@router.get("/metrics", response_class=Response)
def metrics(request: Request, services: ServicesDep) -> Response:
    """Prometheus text. With `security.metrics_token` set, only a scraper that sends
    `Authorization: Bearer <metrics_token>` gets it (the figures name units and cameras)."""
    expected = services.settings.security.metrics_token
    if expected is not None:
        scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
        # compared in constant time, as bytes: a timing difference must not spell the token out
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), expected.get_secret_value().encode()):
            raise Unauthorized("GET /metrics needs the scrape token (Authorization: Bearer <security.metrics_token>)")
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
