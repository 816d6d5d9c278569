"""Settings: env over YAML, and a bad value stops the start naming its key."""

from __future__ import annotations

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
