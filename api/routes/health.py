"""`/healthz` and `/metrics`: what a load balancer and Prometheus ask."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.deps import ServicesDep
from config import disk_space
from config.dependencies import describe
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
    except Exception as exc:  # noqa: BLE001 - report, never raise: this is the health check
        checks["database"] = f"error: {describe(exc)}"
    if services.redis is None:
        checks["redis"] = "not configured"
    else:
        try:
            services.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001 - e.g. "error: ConnectionError: Error 111 connecting to ..."
            checks["redis"] = f"error: {describe(exc)}"
    # the data folder's disk (and the video's): "ok: 41.0% free", "low: ..." (200) or "full: ..." (503)
    disk = disk_space.health(services.settings)
    healthy = all(v in ("ok", "not configured") for v in checks.values()) and all(map(disk_space.healthy, disk.values()))
    return JSONResponse({"status": "ok" if healthy else "unavailable", **checks, **disk},
                        status_code=200 if healthy else 503)


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
