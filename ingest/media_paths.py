"""What a `file:` stream may read: a plain local file inside the configured media folders.

FFmpeg reads `file:` URLs with a protocol of its own only when they say so, but the path it
gets decides everything: `file:http://...`, `file:concat:/etc/passwd|...` or
`file:tcp://host:port?listen=1` would, handed on as a path, make the worker fetch a URL, read any
file or listen on a port. So:

- `registry.fields.file_url_path` is the static rule every input path applies (`StreamUrl`): a
  `file:` URL is `file:///absolute/path`, with no host, query, fragment, `.` or `..` segment,
  and no control character once percent-decoded.
- `MediaFolders.open_path` is the rule the worker applies each time it opens the file: the
  path with its links and `..` resolved must lie inside one of the media folders. Whether the
  file exists is only said for paths inside them; outside, existing or not, the answer is one
  and the same, so a technician cannot probe the server's file system through `last_error`.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from registry.fields import file_url_path

if TYPE_CHECKING:
    from config.settings import Settings

#: The env variable `lookout serve` sets for its workers (JSON list), read by the settings.
ENV = "LOOKOUT_SECURITY__MEDIA_DIRS"
OUTSIDE = "file: streams may only read files inside the media folders (security.media_dirs)"


class MediaRefused(Exception):
    """A `file:` stream the worker will not open; the message is safe to show."""


class MediaFolders:
    """The folders `file:` streams may read from (each resolved once, links and all)."""

    def __init__(self, folders: Iterable[Path | str]) -> None:
        self.folders = tuple(Path(os.path.realpath(Path(f).expanduser())) for f in folders)

    def __bool__(self) -> bool:
        return bool(self.folders)

    def open_path(self, url: str) -> str:
        """The real path to open for a `file:` URL, checked now (call it at every open: a link
        may change); MediaRefused otherwise."""
        try:
            path = file_url_path(url)
        except ValueError as exc:
            raise MediaRefused(str(exc)) from None
        real = Path(os.path.realpath(path))  # links and `..` resolved, whether it exists or not
        if not any(real != folder and real.is_relative_to(folder) for folder in self.folders):
            raise MediaRefused(OUTSIDE)
        try:
            mode = real.stat().st_mode
        except FileNotFoundError:
            raise MediaRefused(f"not found in the media folders: {url}") from None
        except OSError:
            raise MediaRefused(f"cannot be read: {url}") from None
        if not stat.S_ISREG(mode):
            raise MediaRefused(f"not a plain file: {url}")
        return str(real)


def media_dirs_of(settings: Settings) -> tuple[Path, ...]:
    """The configured media folders, or `data_dir/media` when none is configured."""
    folders = settings.security.media_dirs or [settings.data_dir / "media"]
    return tuple(Path(os.path.realpath(Path(f).expanduser())) for f in folders)


def worker_media_env(settings: Settings, extra: Iterable[Path] = ()) -> dict[str, str]:
    """The environment that gives the workers `lookout serve` starts the same media folders,
    plus `extra` ones (the demo's clips)."""
    folders = dict.fromkeys([*media_dirs_of(settings), *(Path(os.path.realpath(f)) for f in extra)])
    return {ENV: json.dumps([str(f) for f in folders])}
