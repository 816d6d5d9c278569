"""Prometheus metrics and the one-line-per-request access log.

Each app has its own `CollectorRegistry`, so several apps (tests) never clash. Request
metrics are labelled by route template (`/api/v1/cameras/{camera_id}`), never by raw path,
so their cardinality stays bounded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from api.services import Services

log = logging.getLogger("lookout.http")


class RegistryCollector(Collector):
    """Camera counts by network and status, read from the database at scrape time."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("lookout_cameras", "Registered cameras", labels=["network", "status"])
        try:
            with self.services.sessions() as session:
                for network, status, count in self.services.registry.status_counts(session):
                    family.add_metric([network, status], count)
        except Exception:  # a scrape must not fail because the database blinked
            log.warning("metrics_registry_unavailable", exc_info=True)
        yield family


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "lookout_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "lookout_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
            registry=registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )

    async def middleware(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            elapsed = time.perf_counter() - start
            route = request.scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.requests.labels(request.method, template, str(status)).inc()
            self.latency.labels(request.method, template).observe(elapsed)
            log.info("http_request", extra={
                "method": request.method, "path": request.url.path, "status": status,
                "duration_ms": round(elapsed * 1000, 2), "user": getattr(request.state, "actor", None),
            })
