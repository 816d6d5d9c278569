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
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response

from alerts.delivery import Delivery, DeliveryState
from alerts.model import OPEN_STATES, Alert
from api.services import Services
from config.redis_names import ALERT_ENGINE_GROUP, EVENTS_STREAM
from ingest.stream_figures import read_figures

log = logging.getLogger("lookout.http")


class RegistryCollector(Collector):
    """Camera counts by network and status, read from the database at scrape time."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("lookout_cameras", "Registered cameras", labels=["network", "status"])
        rate = GaugeMetricFamily("lookout_unit_online_rate", "Online share of the enabled cameras of a unit's subtree",
                                 labels=["unit_id"])
        try:
            with self.services.sessions() as session:
                for network, status, count in self.services.registry.status_counts(session):
                    family.add_metric([network, status], count)
                for root in self.services.registry.root_paths(session):
                    for unit_id, counts in self.services.registry.online_by_unit(session, root).items():
                        total = sum(counts.values())
                        if total:
                            rate.add_metric([str(unit_id)], counts.get("online", 0) / total)
        except Exception:  # a scrape must not fail because the database blinked
            log.warning("metrics_registry_unavailable", exc_info=True)
        yield family
        yield rate
        yield from self._stream_families()

    def _stream_families(self) -> Iterator[GaugeMetricFamily]:
        names = {
            "packets_per_second": "Packets received per second",
            "decoded_per_second": "Frames decoded per second",
            "bitrate_kbps": "Received bitrate in kbit/s",
            "keyframe_interval_seconds": "Seconds between keyframes",
            "reconnects": "Stream reconnects since the reader started",
            # broken video (bit errors): a count that only grows while one worker reads the camera
            # (restarts from 0 when another takes it), and its last minute, which marks it degraded
            "decode_errors": "Damaged frames since the worker reading the camera took it",
            "recent_decode_errors": "Damaged frames in the reader's last minute (5 or more: degraded)",
        }
        families = {k: GaugeMetricFamily(f"lookout_stream_{k}", text, labels=["camera_id"]) for k, text in names.items()}
        if self.services.redis is not None:
            try:
                figures = read_figures(self.services.redis)
            except Exception:
                log.warning("metrics_stream_figures_unavailable", exc_info=True)
                figures = {}
            for camera_id, data in figures.items():
                for key, family in families.items():
                    if data.get(key) is not None:
                        family.add_metric([str(camera_id)], float(data[key]))
        yield from families.values()


class AlertCollector(Collector):
    """Open alerts by kind and severity, deliveries waiting or dead, and the engine's backlog on
    `lookout:events`: what an on-call engineer looks at first when alerts seem late."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        open_alerts = GaugeMetricFamily("lookout_alerts_open", "Open alerts", labels=["kind", "severity"])
        deliveries = GaugeMetricFamily("lookout_deliveries", "Webhook and MQTT deliveries not yet done",
                                       labels=["state"])
        backlog = GaugeMetricFamily("lookout_alert_engine_backlog", "Events not yet absorbed by the alert engines",
                                    labels=["kind"])
        try:
            with self.services.sessions() as session:
                for kind, severity, count in session.execute(
                        select(Alert.kind, Alert.severity, func.count()).where(Alert.state.in_(OPEN_STATES))
                        .group_by(Alert.kind, Alert.severity)):
                    open_alerts.add_metric([kind, severity], count)
                counts = dict(session.execute(select(Delivery.state, func.count()).where(
                    Delivery.state.in_([DeliveryState.pending, DeliveryState.dead])).group_by(Delivery.state)).all())
                for state in (DeliveryState.pending, DeliveryState.dead):
                    deliveries.add_metric([state], counts.get(state, 0))
        except Exception:  # a scrape must not fail because the database blinked
            log.warning("metrics_alerts_unavailable", exc_info=True)
        if self.services.redis is not None:
            try:
                for group in self.services.redis.xinfo_groups(EVENTS_STREAM):
                    if group["name"] == ALERT_ENGINE_GROUP:
                        backlog.add_metric(["unread"], group.get("lag") or 0)
                        backlog.add_metric(["unacknowledged"], group["pending"])
            except Exception:  # no stream yet, or Redis away
                log.debug("metrics_engine_backlog_unavailable", exc_info=True)
        yield open_alerts
        yield deliveries
        yield backlog


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
