"""One validated settings tree: environment variables (`LOOKOUT_...`) over a YAML file.

The YAML file is `$LOOKOUT_CONFIG` if set, else `config/lookout.yaml` beside this module.
Everything is checked at start: a typo or a bad value stops the process with the key's
path and the reason instead of failing at 3 a.m.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from config.alerting import AlertSettings
from config.errors import ConfigError
from config.security import SecuritySettings
from config.worker import WorkerSettings, moved_keys

DEFAULT_CONFIG_FILE = Path(__file__).with_name("lookout.yaml")

#: The camera networks a county runs side by side (FIELD.md). Extend in config.
DEFAULT_NETWORKS: dict[str, str] = {
    "tianwang": "天网",
    "xueliang": "雪亮",
    "huiyan": "慧眼",
    "emergency_broadcast": "应急广播",
    "traffic": "智慧交通",
    "urban_management": "数字城管",
    "department": "部门自建",
    "other": "其他",
}


def _config_file() -> Path:
    return Path(os.environ.get("LOOKOUT_CONFIG", DEFAULT_CONFIG_FILE))


class Settings(BaseSettings):
    """All of Lookout's settings. Field names are the YAML keys; env vars add `LOOKOUT_`."""

    model_config = SettingsConfigDict(
        env_prefix="LOOKOUT_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(Path("data"), description="Folder for SQLite, embedded Redis, keys.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default SQLite file `lookout.db` in data_dir."
    )
    redis_url: str | None = Field(
        None, description="redis:// or unix:// URL; default: a private embedded redis-server."
    )
    dependency_retry_seconds: float = Field(
        2.0, gt=0, le=60,
        description="while Redis or the database does not answer at start, try again (and log one line) this often")
    secret_key: SecretStr | None = Field(
        None,
        description="Fernet key that encrypts camera credentials; default: data_dir/secret.key.",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    token_ttl_hours: int = Field(24 * 30, gt=0, le=24 * 366)
    networks: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_NETWORKS))
    registry_feed_maxlen: int = Field(100_000, gt=0)
    model_cache_dir: Path = Field(Path("models/cache"), description="ONNX files made by `lookout models build`")
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)

    @model_validator(mode="before")
    @classmethod
    def _no_moved_keys(cls, data: Any) -> Any:
        """The worker's flat keys of before issue 15 stop the start naming their new place: an old
        env variable would otherwise be ignored without a word (`config.worker.MOVED`)."""
        moved = moved_keys(data if isinstance(data, dict) else (), os.environ)
        if moved:
            raise ValueError("; ".join(moved))
        return data

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("networks")
    @classmethod
    def _network_codes(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one network is needed")
        for code in value:
            if not code.isascii() or not code.replace("_", "").isalnum() or len(code) > 32:
                raise ValueError(f"network code {code!r} must be ASCII letters, digits or _")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("only sqlite:// and postgresql:// URLs are supported")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_source = YamlConfigSettingsSource(settings_cls, yaml_file=_config_file())
        return (init_settings, env_settings, yaml_source)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'lookout.db').resolve()}"


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        if not item["loc"]:  # the whole tree (a moved key): the message names the keys itself
            lines.append(str(item["msg"]).removeprefix("Value error, "))
            continue
        path = ".".join(str(p) for p in item["loc"])
        env = "LOOKOUT_" + "__".join(str(p) for p in item["loc"]).upper()
        lines.append(f"{path} (env {env}): {item['msg']}")
    return "invalid settings: " + "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning any validation error into one `ConfigError` naming keys."""
    path = _config_file()
    if "LOOKOUT_CONFIG" in os.environ and not path.is_file():
        raise ConfigError(f"config file {path} (LOOKOUT_CONFIG) does not exist", field="config")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
