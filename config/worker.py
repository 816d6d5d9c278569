"""Settings of the ingest workers: sampling, the detectors they run, video kept for clips, the
disk guard, the event outbox.

They live under the `worker:` key of the settings file (env `LOOKOUT_WORKER__...`), beside
`alerts:` and `security:`: one section per process. Until issue 15 they were flat keys at the
top; `MOVED` maps each old key to its new place, so that a start with an old key stops with a
message naming the new one (unknown env variables are otherwise ignored: an old
`LOOKOUT_SEGMENT_MAX_GB` would silently stop counting).

`model_cache_dir` stays at the top: `lookout models build` writes it and `lookout eval` reads
it as much as the workers do; it is the models' folder, not a worker's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class WorkerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl_seconds: float = Field(9.0, gt=0.5, le=300, description="a worker silent this long is dead and its cameras move")
    step_seconds: float = Field(2.0, gt=0.05, le=60, description="how often a worker renews and rebalances")
    stream_figures_seconds: float = Field(5.0, gt=0, le=300, description="how often a worker publishes stream figures")
    analysis_interval_seconds: float = Field(2.0, gt=0.05, le=3600, description="one analysed frame per camera this often")
    analysis_width: int = Field(640, ge=32, le=3840)
    analysis_height: int = Field(360, ge=32, le=2160)
    detectors: list[str] = Field(["fire_smoke", "people", "crowd_people", "crowd_density"],
                                 description="models the workers run; [] for none; crowds are counted with both "
                                 "crowd_people and crowd_density")
    crowd_interval_seconds: float = Field(
        10.0, ge=1, le=3600, description="a camera with a crowd zone is counted this often (about 0.33 s of one core "
        "per count: bench/RESULTS.md)")
    model_precision: Literal["int8", "fp32"] = Field(
        "int8", description="int8: about 3x faster on CPUs with VNNI, same alarms (bench/quality.py)")
    snapshot_dir: Path | None = Field(None, description="event snapshots; default data_dir/snapshots")
    segment_dir: Path | None = Field(None, description="rolling video for clips; default data_dir/segments")
    segment_seconds: float = Field(10.0, ge=1, le=600)
    segment_max_age_hours: float = Field(72.0, gt=0, description="older segments are deleted")
    segment_max_gb: float = Field(50.0, gt=0, description="the oldest segments go first above this")
    segment_min_free_percent: float = Field(
        10.0, ge=0, le=90, description="video is deleted, oldest first, to keep this share of its filesystem free")
    recording_stop_free_percent: float = Field(
        5.0, ge=0, le=90, description="under this share free (after deleting all video) recording stops until "
        "space returns: the database, Redis's AOF and the audit log keep room; /healthz answers 503")
    recording_stop_free_mb: float = Field(
        256.0, ge=0, le=2**20, description="recording also stops under this many MB free, whatever the share: "
        "what the database and Redis need does not shrink with the disk")
    outbox_max_events: int = Field(
        100_000, ge=100, le=10_000_000,
        description="events a worker keeps on disk while Redis is away; the oldest go first when full")
    stream_read_timeout_seconds: float = Field(
        5.0, gt=0.5, le=120, description="silence after which a camera is offline and its stream reopened")

    @field_validator("recording_stop_free_percent")
    @classmethod
    def _stop_under_reserve(cls, value: float, info: ValidationInfo) -> float:
        reserve = info.data.get("segment_min_free_percent")
        if reserve is not None and value > reserve:
            raise ValueError(f"must not exceed segment_min_free_percent ({reserve})")
        return value

    def segment_folder(self, data_dir: Path) -> Path:
        """Where the rolling video goes: `segment_dir`, else `data_dir/segments`."""
        return self.segment_dir or data_dir / "segments"

    def snapshot_folder(self, data_dir: Path) -> Path:
        """Where event snapshots go: `snapshot_dir`, else `data_dir/snapshots`."""
        return self.snapshot_dir or data_dir / "snapshots"


#: The flat top-level keys of before issue 15 → their key inside `worker:`.
MOVED: dict[str, str] = {
    "worker_ttl_seconds": "ttl_seconds",
    "worker_step_seconds": "step_seconds",
    **{name: name for name in WorkerSettings.model_fields if name not in ("ttl_seconds", "step_seconds")},
}


def moved_keys(keys: Iterable[str], env: Mapping[str, str], prefix: str = "LOOKOUT_") -> list[str]:
    """One line per old flat key among the settings' `keys` (YAML, arguments) or the `env`
    variables, naming where it lives now; empty when none is used."""
    given = set(keys)
    found = [f"{old} moved to worker.{new} (env {prefix}WORKER__{new.upper()})"
             for old, new in MOVED.items() if old in given]
    names = {name.upper() for name in env}  # env names are matched in any case, as the settings do
    found += [f"{prefix}{old.upper()} moved to {prefix}WORKER__{new.upper()} (worker.{new})"
              for old, new in MOVED.items() if f"{prefix}{old.upper()}" in names]
    return found
