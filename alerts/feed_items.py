"""A change of the feed as every channel sends it (`FeedItem`), and what one listener or
subscription takes of them (`FeedFilter`): the unit scope always, then kinds, severity and
addressed-only as asked. The live feed of the API, webhooks and MQTT all use these two."""

from __future__ import annotations

import json
from dataclasses import dataclass

from alerts.model import AlertChange


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One change as every channel sends it."""

    id: int
    unit_path: str
    addressed: tuple[int, ...]
    kind: str
    severity_rank: int
    data: str  # the JSON body

    @classmethod
    def of(cls, change: AlertChange) -> FeedItem:
        body = {"change_id": change.id, "change": change.change, "at": change.at.isoformat(), "actor": change.actor,
                "alert": change.alert}
        return cls(change.id, change.unit_path, tuple(change.addressed), change.kind, change.severity_rank,
                   json.dumps(body, ensure_ascii=False))


@dataclass(frozen=True, slots=True)
class FeedFilter:
    """What one listener may and wants to see."""

    scope: str  # the person's unit path: nothing outside it, ever
    unit_id: int  # the person's unit, for addressed_only
    kinds: frozenset[str] = frozenset()
    min_severity: int = 0
    addressed_only: bool = False

    def takes(self, item: FeedItem) -> bool:
        return (item.unit_path.startswith(self.scope)
                and (not self.kinds or item.kind in self.kinds)
                and item.severity_rank >= self.min_severity
                and (not self.addressed_only or self.unit_id in item.addressed))
