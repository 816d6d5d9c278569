"""The figures centers are judged by, per unit, each rolled up over the unit's subtree: alerts by
kind and state, time to acknowledge and to resolve (median, p90), closure, escalation and
false-alarm rates, the camera online rate, and what operators' false-alarm marks taught the
cameras (suppressions in force, and the candidates they stopped: `registry.suppressions`).

Alerts are read once as columns; each is counted at its unit and every ancestor inside the
asked scope by repeating its row once per such unit, and every figure is then a group-by over
those (unit, alert) pairs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.model import Alert, AlertState
from registry import suppressions
from registry.camera_store import CameraRegistry
from registry.units import Unit


def _epoch(times: list[datetime | None]) -> np.ndarray:
    return np.array([np.nan if t is None else t.timestamp() for t in times], np.float64)


def _spread(values: np.ndarray, groups: np.ndarray, count: int) -> list[dict[str, float | int | None]]:
    """Median, p90 and count of `values` (NaN: none) per group 0..count-1."""
    keep = ~np.isnan(values)
    values, groups = values[keep], groups[keep]
    order = np.lexsort((values, groups))
    values, groups = values[order], groups[order]
    bounds = np.searchsorted(groups, np.arange(count + 1))
    out: list[dict[str, float | int | None]] = []
    for g in range(count):
        part = values[bounds[g]:bounds[g + 1]]
        if len(part):
            median, p90 = np.percentile(part, [50, 90])
            out.append({"median": round(float(median), 1), "p90": round(float(p90), 1), "count": len(part)})
        else:
            out.append({"median": None, "p90": None, "count": 0})
    return out


def _rate(part: np.ndarray, whole: np.ndarray) -> list[float | None]:
    return [round(float(p) / float(w), 4) if w else None for p, w in zip(part, whole)]


def unit_stats(session: Session, registry: CameraRegistry, scope: str, since: datetime, until: datetime
               ) -> list[dict[str, Any]]:
    """The figures of every unit under (and including) the unit at path `scope`, for the
    alerts created in [since, until), rolled up the tree."""
    units = session.execute(select(Unit.id, Unit.code, Unit.name, Unit.path, Unit.depth)
                            .where(Unit.path.startswith(scope, autoescape=True)).order_by(Unit.path)).all()
    index = {u.path: i for i, u in enumerate(units)}
    chain = {u.id: [index[p] for p in _prefixes(u.path) if p in index] for u in units}  # unit → itself and ancestors
    rows = session.execute(
        select(Alert.unit_id, Alert.kind, Alert.state, Alert.escalations, Alert.created_at, Alert.acknowledged_at,
               Alert.closed_at)
        .where(Alert.unit_id.in_([u.id for u in units]), Alert.created_at >= since, Alert.created_at < until)).all()
    count = len(units)
    if rows:
        unit_ids, kinds, states, escalations, created, acked, closed = map(list, zip(*rows))
    else:
        unit_ids, kinds, states, escalations, created, acked, closed = [], [], [], [], [], [], []
    reach = [chain[u] for u in unit_ids]
    repeat = np.array([len(r) for r in reach], np.int64)
    groups = np.array([g for r in reach for g in r], np.int64)
    states_a = np.repeat(np.array(states, dtype=object), repeat)
    kinds_a = np.repeat(np.array(kinds, dtype=object), repeat)
    escalated = np.repeat(np.array(escalations, np.int64) > 0, repeat)
    resolved = states_a == AlertState.resolved.value
    false = states_a == AlertState.false_alarm.value
    start = _epoch(created)  # type: ignore[arg-type]
    ack_s = np.repeat(_epoch(acked) - start, repeat)
    resolve_s = np.repeat(_epoch(closed) - start, repeat)
    resolve_s[~resolved] = np.nan
    total = np.bincount(groups, minlength=count)
    closed_n = np.bincount(groups, weights=resolved | false, minlength=count)
    by_kind = {k: np.bincount(groups[kinds_a == k], minlength=count) for k in sorted(set(kinds))}
    by_state = {s.value: np.bincount(groups[states_a == s.value], minlength=count) for s in AlertState}
    ack_spread, resolve_spread = _spread(ack_s, groups, count), _spread(resolve_s, groups, count)
    closure = _rate(closed_n, total)
    escalation = _rate(np.bincount(groups, weights=escalated, minlength=count), total)
    false_rate = _rate(np.bincount(groups, weights=false, minlength=count), closed_n)
    online = registry.online_by_unit(session, scope)
    taught = suppressions.by_unit(session, scope)
    out = []
    for i, unit in enumerate(units):
        cams = online.get(unit.id, {})
        cameras = sum(cams.values())
        out.append({
            "unit_id": unit.id, "code": unit.code, "name": unit.name, "depth": unit.depth,
            "alerts": int(total[i]),
            "by_kind": {k: int(v[i]) for k, v in by_kind.items() if v[i]},
            "by_state": {s: int(v[i]) for s, v in by_state.items()},
            "acknowledge_seconds": ack_spread[i], "resolve_seconds": resolve_spread[i],
            "closure_rate": closure[i], "escalation_rate": escalation[i], "false_alarm_rate": false_rate[i],
            "cameras": cameras, "cameras_online": cams.get("online", 0),
            "online_rate": round(cams.get("online", 0) / cameras, 4) if cameras else None,
            "suppressions": taught.get(unit.id, (0, 0))[0], "suppressed_candidates": taught.get(unit.id, (0, 0))[1],
        })
    return out


def _prefixes(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    return ["/".join(parts[:n]) + "/" for n in range(1, len(parts) + 1)]
