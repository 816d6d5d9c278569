"""Per-camera rules over a batch's detections: zones, thresholds, minimum size, persistence,
cooldown and armed hours for flame and smoke; counted people, density and levels for crowds.

Everything is array work over the whole batch: every box of every camera is tested against
every zone edge of the cameras at once (a (boxes × edges) crossing table, masked to each box's
own camera), persistence is a bit history per (camera, kind), cooldowns and crowd timers are
arrays. Python loops only run over the events that come out, which are rare.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detectors.camera_rows import CameraRows, grow, lookup
from detectors.detections import Detections
from detectors.events import Event

FIRE_KINDS = ("flame", "smoke")
KIND_COLUMNS = ("flame", "person", "smoke")  # sorted: columns of the threshold table
LEVELS = ("normal", "pre_alarm", "alarm")
RISING = "rising"  # the level of a crowd event raised by a fast-growing count below the density levels
RISE_SAMPLES = 16  # counts kept per zone for the rate of rise
MINUTES = 1440


@dataclass(frozen=True)
class Zone:
    """A polygon in normalised frame coordinates (x, y in 0..1, origin top-left)."""

    name: str
    polygon: tuple[tuple[float, float], ...]
    include: bool = True  # False: an exclusion (chimney, kitchen, welding bay)
    area_m2: float | None = None  # ground area it covers, for crowd density

    def __post_init__(self) -> None:
        points = np.asarray(self.polygon, float)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
            raise ValueError(f"zone {self.name!r}: a polygon needs at least 3 (x, y) points")
        if (points < 0).any() or (points > 1).any():
            raise ValueError(f"zone {self.name!r}: coordinates are normalised to 0..1")
        if self.area_m2 is not None and self.area_m2 <= 0:
            raise ValueError(f"zone {self.name!r}: area_m2 must be positive")


@dataclass(frozen=True)
class CameraRules:
    zones: tuple[Zone, ...] = ()  # no include zone: the whole picture is watched
    # flame and smoke, with persistence: chosen on the event-level frontier of `lookout eval
    # video` over the development part of video-dev and the fire-smoke sequences (thresholds ×
    # persistence), for boxes that passed the verifier (detectors/verify.py); the lowest flame
    # threshold the flame-core test allows, smoke where steam and asphalt stop alarming, and 4 of
    # 6 samples (8–12 s at the 2 s interval) — see bench/RESULTS.md
    thresholds: dict[str, float] = field(default_factory=lambda: {"flame": 0.1, "smoke": 0.6, "person": 0.4})
    min_box_area: float = 0.0004  # share of the picture; smaller boxes are noise at this range
    persistence: tuple[int, int] = (4, 6)  # k of the last n samples
    cooldown_seconds: float = 600.0
    armed: tuple[tuple[int, int], ...] = ()  # (start, end) minutes of the local day; empty: always
    crowd_levels: tuple[float, float] = (2.0, 4.0)  # people per m²: pre-alarm, alarm
    crowd_min_seconds: float = 30.0  # a level must hold this long before it is raised
    # a zone still under the pre-alarm density whose count grows this fast (people per minute,
    # the slope over the last `crowd_rise_seconds`) raises `rising`; None: never
    crowd_rise_per_minute: float | None = 30.0
    crowd_rise_seconds: float = 60.0

    def __post_init__(self) -> None:
        k, n = self.persistence
        if not 1 <= k <= n <= 30:
            raise ValueError("persistence must be k of n with 1 <= k <= n <= 30")
        if not self.crowd_levels[0] < self.crowd_levels[1]:
            raise ValueError("the pre-alarm density must be below the alarm density")
        if self.crowd_rise_per_minute is not None and self.crowd_rise_per_minute <= 0:
            raise ValueError("crowd_rise_per_minute must be positive (None: no rising level)")
        if not 0 < self.crowd_rise_seconds <= 3600:
            raise ValueError("crowd_rise_seconds must be in (0, 3600]")
        for start, end in self.armed:
            if not (0 <= start < 1440 and 0 <= end <= 1440):
                raise ValueError("armed hours are minutes of the day, 0..1440")


def in_window(minute: np.ndarray | int, start: int, end: int) -> np.ndarray:
    """Whether each minute of the day lies in the window [start, end) — the one rule for every
    "HH:MM to HH:MM" of the product (armed hours, subscription hours): an end before the start
    wraps past midnight (22:00 to 06:00 is the night), an end equal to the start is the whole day."""
    minute = np.asarray(minute)
    if start < end:
        return (minute >= start) & (minute < end)
    if start > end:
        return (minute >= start) | (minute < end)
    return np.ones(minute.shape, bool)


def armed_minutes(rules: CameraRules) -> np.ndarray:
    """(1440,) bool: whether the rules are armed in each minute of the day."""
    if not rules.armed:
        return np.ones(MINUTES, bool)
    minute = np.arange(MINUTES)
    armed = np.zeros(MINUTES, bool)
    for start, end in rules.armed:
        armed |= in_window(minute, start, end)
    return armed


class RuleTable:
    """Every camera's rules compiled into arrays once (a last row for the default), so the
    per-batch work is indexing, not a lookup per camera or per box."""

    def __init__(self, rules: dict[int, CameraRules], default: CameraRules) -> None:
        self.ids = np.array(sorted(rules), np.int64)
        table = [rules[int(c)] for c in self.ids] + [default]
        self.thresholds = np.array([[r.thresholds.get(k, 1.01) for k in KIND_COLUMNS] for r in table], np.float32)
        self.min_area = np.array([r.min_box_area for r in table])
        self.k = np.array([r.persistence[0] for r in table], np.int64)
        self.n = np.array([r.persistence[1] for r in table], np.uint32)
        self.cooldown = np.array([r.cooldown_seconds for r in table])
        self.armed = np.stack([armed_minutes(r) for r in table])
        self.crowd_levels = np.array([r.crowd_levels for r in table])
        self.crowd_min = np.array([r.crowd_min_seconds for r in table])
        self.rise_rate = np.array([np.inf if r.crowd_rise_per_minute is None else r.crowd_rise_per_minute
                                   for r in table])
        self.rise_seconds = np.array([r.crowd_rise_seconds for r in table])

    def lowest(self, kind: str) -> float:
        """The lowest threshold any camera sets for `kind`: below it, no rule can use a box."""
        return float(self.thresholds[:, KIND_COLUMNS.index(kind)].min())

    def rows(self, camera_ids: np.ndarray) -> np.ndarray:
        """Row of each camera; the default's row for cameras without rules of their own."""
        at = lookup(self.ids, camera_ids)
        return np.where(at >= 0, at, len(self.ids))


class ZoneTable:
    """Every zone of every camera as flat arrays, for batch-wide point-in-polygon tests."""

    def __init__(self, rules: dict[int, CameraRules]) -> None:
        zones = [(camera, z) for camera, r in sorted(rules.items()) for z in r.zones]
        self.camera = np.array([c for c, _ in zones], np.int64)
        self.include = np.array([z.include for _, z in zones], bool)
        self.area = np.array([z.area_m2 or np.nan for _, z in zones], np.float64)
        self.names = [z.name for _, z in zones]
        starts, ends, owner = [], [], []
        for index, (_, zone) in enumerate(zones):
            points = np.asarray(zone.polygon, np.float64)
            starts.append(points)
            ends.append(np.roll(points, -1, axis=0))
            owner.append(np.full(len(points), index))
        self.a = np.concatenate(starts) if starts else np.empty((0, 2))
        self.b = np.concatenate(ends) if ends else np.empty((0, 2))
        self.edge_zone = np.concatenate(owner) if owner else np.empty(0, np.int64)
        self.cameras_with_include = set(self.camera[self.include].tolist())

    def contains(self, points: np.ndarray, cameras: np.ndarray) -> np.ndarray:
        """(K, Z) bool: point k lies inside zone z, and z belongs to point k's camera."""
        return self.covers(points) & (self.camera[None, :] == np.asarray(cameras)[:, None])

    def covers(self, points: np.ndarray) -> np.ndarray:
        """(K, Z) bool: point k lies inside zone z's polygon, whoever's camera the zone is."""
        k, z = len(points), len(self.camera)
        if not k or not z:
            return np.zeros((k, z), bool)
        # a point on the picture's edge (the feet of someone cut off by the bottom edge) is in
        # the picture: keep it off the polygon's closing edge, where the crossing test is blind
        inner = np.clip(points, 0.0, 1.0 - 1e-6)
        px, py = inner[:, :1], inner[:, 1:]
        ax, ay, bx, by = self.a[:, 0], self.a[:, 1], self.b[:, 0], self.b[:, 1]
        straddles = (ay > py) != (by > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            cross_x = ax + (py - ay) * (bx - ax) / (by - ay)
        crossings = (straddles & (px < cross_x)).astype(np.int32)  # (K, E)
        counts = np.zeros((k, z), np.int32)
        np.add.at(counts.T, self.edge_zone, crossings.T)  # sum each zone's edges
        return counts % 2 == 1


@dataclass
class CrowdState:
    """Per zone (rows of the ZoneTable): the density level now, since when (nan: never
    measured), the highest level raised since the density last fell below it, the last
    `RISE_SAMPLES` counts with their times (nan: none yet), and whether a rise was raised and
    has not calmed since."""

    level: np.ndarray
    since: np.ndarray
    raised: np.ndarray
    times: np.ndarray
    counts: np.ndarray
    rising: np.ndarray

    @classmethod
    def empty(cls, zones: int) -> CrowdState:
        return cls(np.zeros(zones, np.int64), np.full(zones, np.nan), np.zeros(zones, np.int64),
                   np.full((zones, RISE_SAMPLES), np.nan), np.zeros((zones, RISE_SAMPLES)), np.zeros(zones, bool))

    def moved(self, old_rows: np.ndarray) -> CrowdState:
        """The state for a new zone table: row i takes old row `old_rows[i]`, or starts afresh (-1)."""
        fresh = CrowdState.empty(len(old_rows))
        kept = old_rows >= 0
        for name in ("level", "since", "raised", "times", "counts", "rising"):
            getattr(fresh, name)[kept] = getattr(self, name)[old_rows[kept]]
        return fresh

    def rate(self, zones: np.ndarray, now: np.ndarray, window: np.ndarray) -> np.ndarray:
        """People per minute in each of `zones`: the least-squares slope of its counts of the
        last `window` seconds up to `now` (counts are noisy; two points would make a noisy
        rate); nan until three counts span half the window (or fill the `RISE_SAMPLES` kept:
        counted often, a short span of many counts is a rate too)."""
        times, counts = self.times[zones], self.counts[zones]
        age = now[:, None] - times
        recent = ~np.isnan(times) & (age <= window[:, None])
        weight = recent.astype(np.float64)
        n = weight.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            t_mean = np.nansum(np.where(recent, times, 0.0), axis=1) / n
            c_mean = (counts * weight).sum(axis=1) / n
            dt = np.where(recent, times - t_mean[:, None], 0.0)
            slope = (dt * (counts - c_mean[:, None])).sum(axis=1) / (dt * dt).sum(axis=1)
        span = np.where(recent, age, -np.inf).max(axis=1, initial=-np.inf)
        enough = (n >= 3) & ((span >= window / 2) | (n >= RISE_SAMPLES))
        return np.where(enough & (span > 0), slope * 60.0, np.nan)


@dataclass
class FireState:
    cameras: CameraRows = field(default_factory=CameraRows)
    history: np.ndarray = field(default_factory=lambda: np.empty((0, len(FIRE_KINDS)), np.uint32))
    last_event: np.ndarray = field(default_factory=lambda: np.empty((0, len(FIRE_KINDS)), np.float64))


class RuleEngine:
    """Turns detections into flame, smoke and crowd events, camera by camera, batch by batch."""

    def __init__(self, rules: dict[int, CameraRules], default: CameraRules = CameraRules()) -> None:
        self.rules = dict(rules)
        self.default = default
        self.table = RuleTable(self.rules, default)
        self.zones = ZoneTable(self.rules)
        self.fire = FireState()
        self.crowd = CrowdState.empty(len(self.zones.camera))

    def update_rules(self, changes: dict[int, CameraRules | None]) -> None:
        """Give cameras rules of their own (None: back to the default) and compile the tables
        again — rules change seldom, batches every second. A camera's persistence history and
        cooldown carry over; its crowd levels start again, since its zones may have changed."""
        if not changes:
            return
        for camera_id, rules in changes.items():
            if rules is None:
                self.rules.pop(camera_id, None)
            else:
                self.rules[camera_id] = rules
        before = {key: row for row, key in enumerate(zip(self.zones.camera.tolist(), self.zones.names))
                  if key[0] not in changes}
        self.table = RuleTable(self.rules, self.default)
        self.zones = ZoneTable(self.rules)
        old = np.array([before.get(key, -1) for key in zip(self.zones.camera.tolist(), self.zones.names)], np.int64)
        self.crowd = self.crowd.moved(old)

    # -- shared steps ------------------------------------------------------------------------
    def _per_box(self, detections: Detections, camera_ids: np.ndarray, size: tuple[int, int],
                 kinds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(camera of each box, threshold of each box, minimum area of each box in pixels)."""
        cameras = camera_ids[detections.frame_index]
        rows = self.table.rows(cameras)
        columns = np.searchsorted(np.asarray(KIND_COLUMNS), kinds)
        height, width = size
        return cameras, self.table.thresholds[rows, columns], self.table.min_area[rows] * width * height

    def _allowed(self, points: np.ndarray, cameras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(box passes the zones, index of the include zone it is in or -1)."""
        inside = self.zones.contains(points, cameras)
        excluded = (inside & ~self.zones.include[None, :]).any(axis=1)
        in_include = inside & self.zones.include[None, :]
        needs_include = np.isin(cameras, list(self.zones.cameras_with_include))
        if not in_include.shape[1]:
            first = np.full(len(points), -1)
        else:
            first = np.where(in_include.any(axis=1), in_include.argmax(axis=1), -1)
        return ~excluded & (~needs_include | (first >= 0)), first

    # -- flame and smoke ---------------------------------------------------------------------
    def fire_events(self, detections: Detections, kinds_of_class: tuple[str, ...], camera_ids: np.ndarray,
                    timestamps: np.ndarray, size: tuple[int, int], minute_of_day: float) -> list[Event]:
        """Events for the batch `camera_ids` (one sample each) from the fire model's boxes."""
        class_kind = np.asarray(kinds_of_class)
        kinds = class_kind[detections.class_id] if len(detections) else np.empty(0, str)
        cameras, threshold, min_area = self._per_box(detections, camera_ids, size, kinds)
        height, width = size
        centres = np.stack([(detections.xyxy[:, 0] + detections.xyxy[:, 2]) / (2 * width),
                            (detections.xyxy[:, 1] + detections.xyxy[:, 3]) / (2 * height)], axis=1)
        allowed, zone = self._allowed(centres, cameras)
        keep = (detections.confidence >= threshold) & (detections.areas >= min_area) & allowed
        kind_index = np.searchsorted(np.asarray(FIRE_KINDS), kinds) if len(kinds) else np.empty(0, int)
        keep &= np.isin(kinds, FIRE_KINDS)

        rows = self._fire_rows(camera_ids)
        rule = self.table.rows(camera_ids)
        hit = np.zeros((len(camera_ids), len(FIRE_KINDS)), bool)
        hit[detections.frame_index[keep], kind_index[keep]] = True
        history = ((self.fire.history[rows] << np.uint32(1)) | hit).astype(np.uint32)
        history &= ((np.uint32(1) << self.table.n[rule]) - np.uint32(1))[:, None]
        self.fire.history[rows] = history
        armed = self.table.armed[rule, int(minute_of_day) % MINUTES]
        due = (np.bitwise_count(history) >= self.table.k[rule][:, None]) & hit & armed[:, None]
        due &= (timestamps[:, None] - self.fire.last_event[rows]) >= self.table.cooldown[rule][:, None]

        events = []
        for frame, k in zip(*np.nonzero(due)):
            mine = keep & (detections.frame_index == frame) & (kind_index == k)
            boxes = detections.xyxy[mine] / np.array([width, height, width, height], np.float32)
            zones = sorted({self.zones.names[z] for z in zone[mine] if z >= 0})
            self.fire.last_event[rows[frame], k] = timestamps[frame]
            events.append(Event(int(camera_ids[frame]), FIRE_KINDS[k], float(timestamps[frame]),
                                score=float(detections.confidence[mine].max()), evidence={
                                    "count": int(mine.sum()),
                                    "boxes": np.round(boxes, 4).tolist(),
                                    "scores": np.round(detections.confidence[mine], 3).tolist(),
                                    "zones": zones,
                                    "samples": int(np.bitwise_count(history[frame, k])),
                                    "window": int(self.table.n[rule[frame]]),
                                }))
        return events

    def _fire_rows(self, camera_ids: np.ndarray) -> np.ndarray:
        rows, added = self.fire.cameras.rows(camera_ids)
        self.fire.history = grow(self.fire.history, added, 0)
        self.fire.last_event = grow(self.fire.last_event, added, -np.inf)
        return rows

    # -- crowds --------------------------------------------------------------------------------
    def crowd_events(self, counts: np.ndarray, camera_ids: np.ndarray,
                     timestamps: np.ndarray) -> tuple[list[Event], dict[tuple[int, str], int]]:
        """Crowd events from the people counted in each zone, `counts` (N, Z) for the batch rows
        `camera_ids` (N,) (`detectors.crowd`), and the count of each zone that has an area
        ((camera, zone) → people).

        A level (people per m²: pre-alarm, alarm) is raised once it has held for the rule's
        `crowd_min_seconds`, and again only after the density fell below it. Below both
        levels, a count growing at `crowd_rise_per_minute` or faster raises `rising`, once
        until the growth calms."""
        z = np.flatnonzero(~np.isnan(self.zones.area) & np.isin(self.zones.camera, camera_ids))
        cameras_z = self.zones.camera[z]
        frame = lookup(camera_ids, cameras_z)  # the batch row of each zone's camera
        rule = self.table.rows(cameras_z)
        count = np.rint(counts[frame, z]).astype(np.int64)
        density = count / self.zones.area[z]
        level = (density[:, None] >= self.table.crowd_levels[rule]).sum(axis=1)  # 0 normal, 1 pre-alarm, 2 alarm
        now = timestamps[frame].astype(np.float64)
        state = self.crowd
        since = np.where((level != state.level[z]) | np.isnan(state.since[z]), now, state.since[z])
        raised = np.minimum(state.raised[z], level)  # it thinned out: a later rise is news again
        due = (level > raised) & (now - since >= self.table.crowd_min[rule])
        raised = np.where(due, level, raised)
        state.level[z], state.since[z], state.raised[z] = level, since, raised

        state.times[z] = np.concatenate([state.times[z][:, 1:], now[:, None]], axis=1)
        state.counts[z] = np.concatenate([state.counts[z][:, 1:], count[:, None].astype(np.float64)], axis=1)
        rate = state.rate(z, now, self.table.rise_seconds[rule])
        fast = rate >= self.table.rise_rate[rule]  # nan (too few counts yet) is never fast
        rise_due = fast & ~state.rising[z] & (level == 0)
        state.rising[z] = np.where(np.isnan(rate), state.rising[z], fast & (state.rising[z] | rise_due))

        def event(i: int, name: str, extra: dict[str, float]) -> Event:
            return Event(int(cameras_z[i]), "crowd", float(now[i]), score=round(float(density[i]), 3), evidence={
                "level": name, "count": int(count[i]), "density": round(float(density[i]), 3),
                "zone": self.zones.names[z[i]], "area_m2": float(self.zones.area[z[i]]), **extra})

        events = [event(i, LEVELS[int(level[i])], {"held_seconds": round(float(now[i] - since[i]), 1)})
                  for i in np.flatnonzero(due)]
        events += [event(i, RISING, {"people_per_minute": round(float(rate[i]), 1)}) for i in np.flatnonzero(rise_due)]
        zone_counts = {(int(c), self.zones.names[zone]): int(n) for c, zone, n in zip(cameras_z, z, count)}
        return events, zone_counts
