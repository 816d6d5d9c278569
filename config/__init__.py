"""Settings and the connections they describe, shared by every process.

`settings` (one tree: environment variables over a YAML file, with one nested section per
process: `worker`, `alerting` for `alerts:`, `security`), `database` (base, engine, sessions),
`redis_server` (embedded or by URL) and `redis_names` (every Redis key and stream name, in one
place), `dependencies` (waiting for both at start), `processes` (children that do not outlive
their parent), `logging` (one JSON object per line), `errors`, `private_files`, `disk_space`.

Imports nothing of the project: every other package may use it.
"""

from config.errors import ConfigError, LookoutError
from config.settings import Settings, load_settings

__all__ = ["ConfigError", "LookoutError", "Settings", "load_settings"]
