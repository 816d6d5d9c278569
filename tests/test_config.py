"""Settings: env over YAML, and a bad value stops the start naming its key."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.settings import load_settings

ROOT = Path(__file__).parents[1]


def test_environment_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "lookout.yaml"
    config.write_text("port: 9001\nlog_level: debug\nnetworks:\n  tianwang: 天网\n  forestry: 林业防火\n")
    monkeypatch.setenv("LOOKOUT_CONFIG", str(config))
    monkeypatch.setenv("LOOKOUT_PORT", "9002")
    settings = load_settings()
    assert settings.port == 9002 and settings.log_level == "DEBUG"
    assert set(settings.networks) == {"tianwang", "forestry"}


@pytest.mark.parametrize(("env", "key"), [
    ({"LOOKOUT_PORT": "abc"}, "port"),
    ({"LOOKOUT_PORT": "70000"}, "port"),
    ({"LOOKOUT_LOG_LEVEL": "LOUD"}, "log_level"),
    ({"LOOKOUT_DATABASE_URL": "mysql://x"}, "database_url"),
    ({"LOOKOUT_REDIS_URL": "localhost:6379"}, "redis_url"),
])
def test_bad_env_value_names_the_key(env: dict[str, str], key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert key in str(raised.value) and f"LOOKOUT_{key.upper()}" in str(raised.value)


def test_yaml_typo_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "lookout.yaml"
    config.write_text("prot: 8000\n")
    monkeypatch.setenv("LOOKOUT_CONFIG", str(config))
    with pytest.raises(ConfigError, match="prot"):
        load_settings()


def test_cli_refuses_to_start_with_a_bad_setting(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "api.cli", "serve"], cwd=ROOT, capture_output=True, text=True,
                          env={"LOOKOUT_PORT": "eighty", "LOOKOUT_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
                          timeout=60)
    assert done.returncode == 2
    assert "port" in done.stderr and "LOOKOUT_PORT" in done.stderr


def test_worker_settings_are_one_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "lookout.yaml"
    config.write_text("worker:\n  segment_max_gb: 3\n  detectors: []\n")
    monkeypatch.setenv("LOOKOUT_CONFIG", str(config))
    monkeypatch.setenv("LOOKOUT_WORKER__TTL_SECONDS", "6")
    monkeypatch.setenv("LOOKOUT_WORKER__DETECTORS", '["fire_smoke"]')
    worker = load_settings().worker
    assert (worker.segment_max_gb, worker.ttl_seconds, worker.detectors) == (3, 6, ["fire_smoke"])


@pytest.mark.parametrize(("yaml", "env", "message"), [
    ("segment_max_gb: 3\n", {}, "segment_max_gb moved to worker.segment_max_gb (env LOOKOUT_WORKER__SEGMENT_MAX_GB)"),
    ("worker_ttl_seconds: 6\n", {}, "worker_ttl_seconds moved to worker.ttl_seconds"),
    ("", {"LOOKOUT_DETECTORS": "[]"}, "LOOKOUT_DETECTORS moved to LOOKOUT_WORKER__DETECTORS (worker.detectors)"),
    ("", {"LOOKOUT_WORKER_STEP_SECONDS": "1"}, "LOOKOUT_WORKER_STEP_SECONDS moved to LOOKOUT_WORKER__STEP_SECONDS"),
])
def test_an_old_flat_worker_key_names_its_new_place(yaml: str, env: dict[str, str], message: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's keys were flat before issue 15; an old env name would otherwise be ignored."""
    config = tmp_path / "lookout.yaml"
    config.write_text(yaml or "{}\n")
    monkeypatch.setenv("LOOKOUT_CONFIG", str(config))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings()


def test_the_disk_lines_are_checked_inside_the_worker_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKOUT_WORKER__RECORDING_STOP_FREE_PERCENT", "30")
    with pytest.raises(ConfigError, match="worker.recording_stop_free_percent .*must not exceed segment_min_free"):
        load_settings()
