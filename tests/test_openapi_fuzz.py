"""Property-based requests over the whole OpenAPI schema: nothing, however malformed, is a 5xx.

Schemathesis generates valid and invalid requests for every operation (bodies, query
strings, path parameters) and sends them to the real app on real SQLite and PostgreSQL
databases and a real Redis, as an admin of the demo county (so requests reach the data layer, not just auth).

The live alert stream is left out: its answer never ends. The routes that reach out to devices (ONVIF probe, discovery, PTZ) are left out: generated
hosts would send traffic to arbitrary addresses and multicast on real interfaces. Their
malformed inputs are tested in tests/test_onvif.py, inside a loopback-only namespace.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from api import demo
from api.app import create_app
from api.services import build_services
from tests.conftest import make_settings


@pytest.fixture(scope="module")
def fuzz_app(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, str]]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    services = build_services(make_settings(database_url, redis_url, folder))
    with services.sessions() as session:
        county = demo.seed(session, services.registry)
        token = demo.demo_admin_token(session, county, timedelta(hours=1))
        session.commit()
    yield create_app(services), token
    services.close()


DEVICE_ROUTES = ("/cameras/probe", "/cameras/discover")
ENDLESS_ROUTES = ("/alerts/stream",)  # an answer that never ends; its bad inputs: tests/test_alerts.py


def operations(app: FastAPI) -> dict[str, schemathesis.schemas.APIOperation]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    found = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith(DEVICE_ROUTES + ENDLESS_ROUTES) or "/ptz/" in operation.path:
            continue
        found[f"{operation.method.upper()} {operation.path}"] = operation
    return found


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_request_gets_a_server_error(fuzz_app: tuple[FastAPI, str], mode: GenerationMode) -> None:
    app, token = fuzz_app
    failures: list[str] = []
    unfuzzable: list[str] = []
    ops = operations(app)
    assert len(ops) >= 15, sorted(ops)
    for label, operation in sorted(ops.items()):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(headers={"Authorization": f"Bearer {token}"})
            if response.status_code >= 500:
                failures.append(f"{label} {case.path_parameters} {case.query} {str(case.body)[:200]} "
                                f"→ {response.status_code}: {response.text[:300]}")

        try:
            check()
        except Unsatisfiable:  # no invalid input exists for it (e.g. /healthz takes no parameters)
            assert mode is GenerationMode.NEGATIVE, label
            unfuzzable.append(label)
    assert not failures, "\n".join(failures[:20])
    assert len(unfuzzable) < len(ops) // 2, unfuzzable
