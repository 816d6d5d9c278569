"""Camera status from what the readers saw, for all cameras of a worker at once.

`observe()` takes parallel arrays (silence since the last packet, decode errors lately) and
returns the cameras whose status changed. A change is committed only after the new state has
held for its hold time, so a flaky link does not flap: going offline needs no extra hold
(the silence itself is the proof), coming back online needs `online_hold` seconds of steady
packets, degraded needs `degraded_hold`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.camera_rows import lookup

UNKNOWN, ONLINE, OFFLINE, DEGRADED = 0, 1, 2, 3
NAMES = np.array(["unknown", "online", "offline", "degraded"])


@dataclass(frozen=True)
class HealthRules:
    offline_after: float = 5.0  # seconds without a packet
    degraded_errors: int = 5  # decode errors since the previous observation
    online_hold: float = 2.0
    degraded_hold: float = 10.0


class HealthTracker:
    def __init__(self, rules: HealthRules) -> None:
        self.rules = rules
        self.ids = np.empty(0, np.int64)
        self.status = np.empty(0, np.int8)
        self.candidate = np.empty(0, np.int8)
        self.since = np.empty(0, np.float64)

    def _align(self, ids: np.ndarray, now: float) -> None:
        """Keep the state of cameras still present; new ones start unknown."""
        if np.array_equal(ids, self.ids):
            return
        keep = lookup(self.ids, ids)  # row of each camera in the old state, -1: new
        known = keep >= 0
        status = np.full(len(ids), UNKNOWN, np.int8)
        candidate = np.full(len(ids), UNKNOWN, np.int8)
        since = np.full(len(ids), now, np.float64)
        status[known], candidate[known], since[known] = self.status[keep[known]], self.candidate[keep[known]], self.since[keep[known]]
        self.ids, self.status, self.candidate, self.since = ids, status, candidate, since

    def observe(self, ids: np.ndarray, silence: np.ndarray, errors: np.ndarray, now: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(camera ids whose status changed, their old status names, their new status names)."""
        self._align(np.asarray(ids, np.int64), now)
        r = self.rules
        observed = np.where(silence > r.offline_after, OFFLINE, np.where(errors >= r.degraded_errors, DEGRADED, ONLINE))
        moved = observed != self.candidate
        self.candidate = np.where(moved, observed, self.candidate).astype(np.int8)
        self.since = np.where(moved, now, self.since)
        hold = np.select([self.candidate == ONLINE, self.candidate == DEGRADED], [r.online_hold, r.degraded_hold], 0.0)
        commit = (self.candidate != self.status) & (now - self.since >= hold)
        old = self.status[commit]
        self.status = np.where(commit, self.candidate, self.status).astype(np.int8)
        return self.ids[commit], NAMES[old], NAMES[self.status[commit]]
