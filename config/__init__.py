"""Settings and the connections they describe (database, Redis), shared by every layer."""

from config.errors import ConfigError, LookoutError
from config.settings import Settings, load_settings

__all__ = ["ConfigError", "LookoutError", "Settings", "load_settings"]
