"""`Event`: what a stage concluded about a camera (smoke, flame, crowd, camera_offline...).

Events go to the Redis stream `lookout:events` (its name: `config.redis_names`, which this pure
core does not import) as flat string fields; `fields()` and `from_fields()` are that encoding,
so producers and the alert engine agree on it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

#: `camera_id` of an event about the deployment itself, not one camera: a worker's disk filling
#: (`disk_pressure`, then `disk_recovered`). Its alert belongs to the root unit (the county
#: command centre that runs the machines); its evidence names the host and the path.
SYSTEM_CAMERA_ID = 0
SYSTEM_KINDS = ("disk_pressure", "disk_recovered")


@dataclass(frozen=True, slots=True)
class Event:
    camera_id: int
    kind: str  # flame, smoke, crowd, video_degraded, camera_offline, camera_online, disk_pressure...
    at: float  # Unix seconds
    score: float = 1.0
    evidence: dict[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def fields(self) -> dict[str, str]:
        return {"event_id": self.event_id, "camera_id": str(self.camera_id), "kind": self.kind,
                "at": f"{self.at:.3f}", "score": f"{self.score:.4f}",
                "evidence": json.dumps(self.evidence, ensure_ascii=False)}

    @classmethod
    def from_fields(cls, data: dict[str, str]) -> Event:
        return cls(camera_id=int(data["camera_id"]), kind=data["kind"], at=float(data["at"]),
                   score=float(data["score"]), evidence=json.loads(data["evidence"]), event_id=data["event_id"])
