"""Disk figures for the worker's storage guard and for `/healthz`: how full is the filesystem
under a path, and is that still safe for the alerts' storage.

Two lines, both a share of the filesystem with one absolute floor under the lower one:

- the *reserve* (`worker.segment_min_free_percent`, 10 %): video is deleted, oldest first, to keep
  this much free. A full video store sits just above it; below it is "low".
- the *stop line* (`worker.recording_stop_free_percent`, 5 %, and at least
  `worker.recording_stop_free_mb`): under it recording stops, so that the database, the
  embedded Redis's AOF and the audit log keep room. Below it is "critical" (`/healthz` says "full" and answers 503).

Why a floor in MB under the stop line only: what the database and Redis need (an AOF rewrite
writes a copy of the dataset, SQLite's journal a copy of the pages it changes) does not grow
with the disk, so on a small disk 5 % is not enough (5 % of 4 GB is 200 MB) and the floor wins
(up to half the disk: a tiny one still records); on a large disk the percentages win and can be
lowered safely (1 % of 20 TB is still 200 GB), the floor still holds. The
reserve is the stop line plus the percent gap between the two lines: the video written between
two passes of the guard must fit between them, whichever line is the larger.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:  # config.settings never imports this module: no cycle, but no need at run time
    from config.settings import Settings

MB = 2**20
Verdict = Literal["ok", "low", "critical"]


class LimitSettings(Protocol):
    """What the lines are made of: the settings' `worker:` section (`config.worker.WorkerSettings`)."""

    @property
    def segment_min_free_percent(self) -> float: ...
    @property
    def recording_stop_free_percent(self) -> float: ...
    @property
    def recording_stop_free_mb(self) -> float: ...


@dataclass(frozen=True, slots=True)
class DiskLimits:
    """The two lines of one deployment (settings), applied to any filesystem's size."""

    min_free_percent: float = 10.0  # the reserve video is deleted to keep
    stop_free_percent: float = 5.0  # under this (or under the floor) recording stops
    stop_floor_bytes: int = 256 * MB

    def __post_init__(self) -> None:
        if not 0 <= self.stop_free_percent <= self.min_free_percent < 100:
            raise ValueError(f"disk limits: need 0 <= recording_stop_free_percent ({self.stop_free_percent}) "
                             f"<= segment_min_free_percent ({self.min_free_percent}) < 100")

    def stop_bytes(self, total: int) -> int:
        # the floor takes at most half the disk: a disk smaller than twice the floor still records
        return int(max(total * self.stop_free_percent / 100, min(self.stop_floor_bytes, total // 2)))

    def reserve_bytes(self, total: int) -> int:
        return self.stop_bytes(total) + int(total * (self.min_free_percent - self.stop_free_percent) / 100)

    @classmethod
    def from_settings(cls, settings: LimitSettings) -> DiskLimits:
        """From the three fields of the `worker:` section: the one place they become lines, for the
        workers' guard (`ingest.camera_runner.StreamSettings`) and `/healthz` alike."""
        return cls(float(settings.segment_min_free_percent), float(settings.recording_stop_free_percent),
                   int(settings.recording_stop_free_mb * MB))


@dataclass(frozen=True, slots=True)
class DiskStatus:
    """One filesystem, measured once: what an unprivileged process may still write."""

    path: str
    device: int
    total_bytes: int
    free_bytes: int  # f_bavail: what is left for a process that is not root
    reserve_bytes: int
    stop_bytes: int

    @property
    def free_percent(self) -> float:
        return 100.0 * self.free_bytes / self.total_bytes if self.total_bytes else 0.0

    @property
    def verdict(self) -> Verdict:
        if self.free_bytes < self.stop_bytes:
            return "critical"
        return "low" if self.free_bytes < self.reserve_bytes else "ok"

    def describe(self) -> str:
        """One line for `/healthz` and logs: 'ok: 43.1% free', or the figures when it is not."""
        if self.verdict == "ok":
            return f"ok: {self.free_percent:.1f}% free"
        word = "full" if self.verdict == "critical" else "low"
        return (f"{word}: {self.free_percent:.1f}% free ({self.free_bytes // MB} MB of {self.total_bytes // MB} MB, "
                f"recording stops under {self.stop_bytes // MB} MB) at {self.path}")

    def evidence(self) -> dict[str, object]:
        return {"path": self.path, "free_bytes": self.free_bytes, "free_percent": round(self.free_percent, 2),
                "total_bytes": self.total_bytes}


def existing(path: Path) -> Path:
    """`path`, or its nearest existing parent (a folder not made yet lives on its parent's disk)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def measure(path: Path, limits: DiskLimits) -> DiskStatus:
    """statvfs of the filesystem holding `path` (a few µs: cheap enough for every tick)."""
    where = existing(path)
    figures = os.statvfs(where)
    total = figures.f_blocks * figures.f_frsize
    return DiskStatus(str(path), os.stat(where).st_dev, total, figures.f_bavail * figures.f_frsize,
                      limits.reserve_bytes(total), limits.stop_bytes(total))


def filesystems(paths: Iterable[Path]) -> dict[int, Path]:
    """The first of `paths` on each filesystem (by st_dev), in order: what shares a disk is
    measured once."""
    found: dict[int, Path] = {}
    for path in paths:
        found.setdefault(os.stat(existing(path)).st_dev, Path(path))
    return found


def health(settings: Settings) -> dict[str, str]:
    """`/healthz`'s disk checks: "disk" for the data folder's filesystem (database, embedded
    Redis, audit), "disk_segments" for the video's when it is another one. Each is "ok: 41.0%
    free", or "low: ..." / "full: ..." with the figures; "full" (under the stop line) and an
    unreadable folder are unhealthy: the alerts' storage is at risk."""
    limits = DiskLimits.from_settings(settings.worker)
    data_dir = Path(settings.data_dir)
    segments = Path(settings.worker.segment_folder(data_dir))
    checks: dict[str, str] = {}
    seen: set[int] = set()
    for key, path in (("disk", data_dir), ("disk_segments", segments)):
        try:
            status = measure(path, limits)
        except OSError as exc:
            checks[key] = f"error: {exc.strerror or type(exc).__name__} at {path}"
            continue
        if status.device not in seen:
            seen.add(status.device)
            checks[key] = status.describe()
    return checks


def healthy(check: str) -> bool:
    """Whether a disk check of `health` lets `/healthz` answer 200 ("low" still does)."""
    return check.startswith(("ok", "low"))
