"""docker-compose.yml cannot run here (no Docker engine); check that it parses and is complete."""

from __future__ import annotations

from pathlib import Path

import yaml

from api.cli import parser

ROOT = Path(__file__).parents[1]


def test_compose_names_api_workers_engines_redis_postgres_and_a_broker() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"api", "worker", "alert-engine", "redis", "postgres", "mosquitto"}
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["alert-engine"]["deploy"]["replicas"] >= 2
    for name in ("api", "worker", "alert-engine"):
        env = services[name]["environment"]
        assert env["LOOKOUT_DATABASE_URL"].startswith("postgresql")
        assert env["LOOKOUT_REDIS_URL"].startswith("redis://redis")
        assert services[name]["build"] == "."
        command = services[name]["command"]
        assert command[0] == "lookout"
        parser().parse_args(command[1:])  # the command exists in our CLI
    assert (ROOT / "Dockerfile").exists()
