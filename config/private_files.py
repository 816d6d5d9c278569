"""What the service writes is the service user's alone: folders 0700, files 0600.

Video of the county's cameras, their sealed credentials, the database and the alert streams
must not be readable by whoever else has an account on the machine. Three layers, so that no
single forgotten `open()` leaks:

1. the process umask, 0o077, set once by `lookout`'s entry point (`api.cli.main`) and given
   explicitly to every process it starts (the embedded redis-server, workers, the alert
   engine), so files made by libraries (SQLite's WAL, Redis's AOF, FFmpeg's segments) are
   private too;
2. explicit modes where Lookout makes a file or folder (`private_dir`, `private_file`,
   `open_private`), which hold even when Lookout is embedded in a process with a looser umask;
3. at start, `tighten` takes back what an older install left readable (it ran before this
   existed, under a 022 umask) and logs what it changed.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING

from config.errors import ConfigError

if TYPE_CHECKING:
    from config.settings import Settings

log = logging.getLogger("lookout.files")

PRIVATE_UMASK = 0o077
FILE_MODE = 0o600
DIR_MODE = 0o700
#: Written in a folder once all of it has been tightened: later starts only look at its top.
MARKER = ".lookout-private"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def private_dir(path: Path, tighten_existing: bool = True) -> Path:
    """`path` made a folder (and its missing parents) with mode 0700; an existing `path` that
    others may enter is tightened unless `tighten_existing` is false (a folder the service
    does not own alone, such as the one a configured SQLite file lies in). Parents that
    already exist are left as they are: they may be the system's (`/var/lib`)."""
    path = Path(path)
    missing = []
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            pass  # another process made it meanwhile; tightened below if it is the leaf
    if missing or tighten_existing:
        _tighten_one(path, DIR_MODE)
    return path


def _tighten_one(path: Path, mode: int) -> None:
    try:
        current = stat.S_IMODE(os.stat(path).st_mode)
        if current & 0o077:
            os.chmod(path, current & 0o700 | (mode & 0o700))
    except FileNotFoundError:
        pass
    except PermissionError:
        log.warning("data_permissions_not_ours", extra={"path": str(path)})


def tighten_file(path: Path) -> None:
    """Take group and other permissions off `path` if it exists (a file left by an older install)."""
    _tighten_one(path, FILE_MODE)


def open_private(path: Path, flags: int) -> int:
    """`os.open` of `path` with `flags` (O_CREAT added), mode 0600 whatever the umask, never
    through a symbolic link; an existing file is tightened. The caller closes the descriptor."""
    fd = os.open(path, flags | os.O_CREAT | _NOFOLLOW, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_file(path: Path) -> Path:
    """Make `path` (empty, 0600) before a library opens it for writing (PyAV, SQLite), so the
    library writes into a private file instead of creating one by the umask."""
    os.close(open_private(path, os.O_WRONLY))
    return path


def append_private(path: Path) -> IO[str]:
    """A text file opened for appending (O_APPEND: each write lands at the end), 0600."""
    return os.fdopen(open_private(path, os.O_WRONLY | os.O_APPEND), "a", encoding="utf-8")


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` (replacing its content), 0600."""
    with os.fdopen(open_private(path, os.O_WRONLY | os.O_TRUNC), "wb") as handle:
        handle.write(data)


def secret_file(path: Path, make: Callable[[], str] | None) -> str | None:
    """The secret stored in `path`; made by `make()` (0600, in a 0700 folder) when the file is
    missing and `make` is given, else None. Two processes starting at once agree on one secret:
    it is written to a private temporary file, then linked into place, which never replaces a
    file another process linked first, and a reader never sees a half-written file."""
    path = Path(path)
    for _ in range(50):
        if path.exists():
            text = path.read_text().strip()
            if text:
                return text
            time.sleep(0.02)  # written this instant by an older release's plain open(): read again
            continue
        if make is None:
            return None
        private_dir(path.parent)
        staged = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        write_private(staged, (make() + "\n").encode())
        try:
            os.link(staged, path)
        except FileExistsError:
            pass
        finally:
            staged.unlink(missing_ok=True)
    raise ConfigError(f"the secret file {path} is empty", field=str(path))


@dataclass
class Tightened:
    """What `tighten` changed: how many entries, the first few of them, and what it could
    not change (files of another user)."""

    changed: int = 0
    examples: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    walked: list[str] = field(default_factory=list)


def service_roots(settings: Settings) -> list[Path]:
    """The folders whose whole content is the service's: data_dir, and the segment, snapshot
    and checkpoint folders when they are configured elsewhere."""
    roots = [settings.data_dir]
    roots += [p for p in (settings.worker.segment_dir, settings.worker.snapshot_dir,
                          settings.security.audit_checkpoint_dir) if p]
    return roots


def tighten(roots: list[Path]) -> Tightened:
    """Take group and other permissions off every folder and file under `roots` (and the roots
    themselves), without following links; log what changed.

    A root without the marker file is walked whole once, then marked: a county's segment store
    holds millions of files, and walking it at every start would hold the start for minutes.
    Afterwards only the root and its direct entries are checked; what the service writes from
    then on is private by the umask and by explicit modes."""
    done = Tightened()
    for root in dict.fromkeys(Path(r).resolve() for r in roots):
        if not os.path.lexists(root):  # a fresh install: nothing to take back, and nothing to walk later
            _mark(private_dir(root), done)
            continue
        if not root.is_dir():
            continue
        marked = (root / MARKER).exists()
        _fix(root, done)
        if marked:
            with os.scandir(root) as entries:
                for entry in entries:
                    _fix(Path(entry.path), done)
            continue
        started = time.monotonic()
        _walk(root, done)
        _mark(root, done)
        done.walked.append(str(root))
        log.info("data_permissions_walked", extra={"root": str(root), "seconds": round(time.monotonic() - started, 3)})
    if done.changed:
        log.warning("data_permissions_tightened", extra={"changed": done.changed, "examples": done.examples,
                                                         "roots": [str(r) for r in roots]})
    if done.refused:
        log.warning("data_permissions_refused", extra={"count": len(done.refused), "examples": done.refused[:10]})
    return done


def _mark(root: Path, done: Tightened) -> None:
    try:
        write_private(root / MARKER, f"every entry made private {datetime.now(timezone.utc).isoformat()}\n".encode())
    except OSError as exc:  # not ours to write: it is walked again next time, and said so
        done.refused.append(f"{root / MARKER}: {exc.strerror}")


def _walk(folder: Path, done: Tightened) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        done.refused.append(f"{folder}: {exc.strerror}")
        return
    for entry in entries:
        _fix(Path(entry.path), done)
        if entry.is_dir(follow_symlinks=False):
            _walk(Path(entry.path), done)


def _fix(path: Path, done: Tightened) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        return  # a link's own mode means nothing; its target is not ours to change
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o077:
        return
    try:
        os.chmod(path, mode & 0o700)  # not a link (checked above); Linux has no lchmod
    except PermissionError:
        done.refused.append(str(path))
        return
    except FileNotFoundError:
        return
    done.changed += 1
    if len(done.examples) < 10:
        done.examples.append(f"{path} {mode:04o}->{mode & 0o700:04o}")
