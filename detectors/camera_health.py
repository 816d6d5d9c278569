"""Camera status from what the readers saw, for all cameras of a worker at once.

`observe()` takes parallel arrays (silence since the last packet, decode errors lately) and
returns the cameras whose status changed. A change is committed only after the new state has
held for its hold time, so a flaky link does not flap: going offline needs no extra hold
(the silence itself is the proof), coming back online needs `online_hold` seconds of steady
packets, degraded needs `degraded_hold`. A reader that has not received its first packet yet
proves nothing either way: the camera stays as it is until the packets come or the silence
lasts `offline_after` (so a dead camera does not pass through `online` on its way to offline).

What the tracker holds as a camera's status is what the registry shows: `assume()` sets it
from the row each time a camera is (re)assigned, since the row may have been created or
rewritten meanwhile (SQLite gives a deleted camera's id to the next one registered; an import or
a hand edit rewrites a row), and a change is only reported against what the registry shows.
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
    degraded_errors: int = 5  # damaged frames within the reader's damage window (60 s)
    online_hold: float = 2.0
    degraded_hold: float = 10.0


class HealthTracker:
    def __init__(self, rules: HealthRules) -> None:
        self.rules = rules
        self.ids = np.empty(0, np.int64)
        self.status = np.empty(0, np.int8)
        self.candidate = np.empty(0, np.int8)
        self.since = np.empty(0, np.float64)

    def assume(self, ids: np.ndarray, status: np.ndarray, now: float) -> None:
        """Cameras (re)assigned with the status their registry rows show (names); what was
        observed of them before is forgotten, as their reader starts afresh."""
        ids = np.asarray(ids, np.int64)
        codes = _codes(status)
        merged = np.union1d(self.ids, ids)
        self._align(merged, now)
        rows = lookup(self.ids, ids)
        self.status[rows] = codes
        self.candidate[rows] = UNKNOWN
        self.since[rows] = now

    def known(self) -> tuple[np.ndarray, np.ndarray]:
        """(camera ids, status names) of every camera whose status has been settled."""
        settled = self.status != UNKNOWN
        return self.ids[settled], NAMES[self.status[settled]]

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

    def observe(self, ids: np.ndarray, silence: np.ndarray, errors: np.ndarray, now: float,
                heard: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(camera ids whose status changed, their old status names, their new status names).

        `heard`: whether each camera's reader has had a packet yet (default: all have); one
        that has not is neither online nor degraded until it does."""
        self._align(np.asarray(ids, np.int64), now)
        r = self.rules
        observed = np.where(silence > r.offline_after, OFFLINE, np.where(errors >= r.degraded_errors, DEGRADED, ONLINE))
        if heard is not None:
            observed = np.where((observed != OFFLINE) & ~np.asarray(heard, bool), UNKNOWN, observed)
        moved = observed != self.candidate
        self.candidate = np.where(moved, observed, self.candidate).astype(np.int8)
        self.since = np.where(moved, now, self.since)
        hold = np.select([self.candidate == ONLINE, self.candidate == DEGRADED], [r.online_hold, r.degraded_hold], 0.0)
        # `unknown` is never reported: it is where a camera starts, not something observed
        commit = (self.candidate != self.status) & (self.candidate != UNKNOWN) & (now - self.since >= hold)
        old = self.status[commit]
        self.status = np.where(commit, self.candidate, self.status).astype(np.int8)
        return self.ids[commit], NAMES[old], NAMES[self.status[commit]]


def _codes(names: np.ndarray) -> np.ndarray:
    """Status codes of status names; a name the tracker does not know counts as unknown."""
    names = np.asarray(names, dtype=object).astype(str)
    codes = np.full(len(names), UNKNOWN, np.int8)
    for code, name in enumerate(NAMES.tolist()):
        codes[names == name] = code
    return codes
