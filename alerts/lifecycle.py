"""What people (and deadlines) do to an alert: acknowledge, dispatch, resolve, false alarm,
reopen, escalate. Each action checks the state it starts from, changes the alert, and returns
the feed change and the audit row that record it; the caller commits all three together."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from alerts.feed import Change
from alerts.model import OPEN_STATES, Alert, AlertState
from alerts.policy import AlertPolicy, level_index, path_ids
from config.errors import Conflict, InvalidInput
from registry.audit import audit_row

CLOSED = (AlertState.resolved.value, AlertState.false_alarm.value)
#: who changes an alert on the events' word: the engine that absorbed them (or the sweep that
#: closes an offline alert whose camera stayed back)
ENGINE_ACTOR = "system:alert-engine"

#: action → (states it may start from, state it leaves; None: unchanged)
ACTIONS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "acknowledge": ((AlertState.new.value,), AlertState.acknowledged.value),
    "dispatch": (OPEN_STATES, AlertState.dispatched.value),
    "resolve": (OPEN_STATES, AlertState.resolved.value),
    "false_alarm": (OPEN_STATES, AlertState.false_alarm.value),
    "reopen": (CLOSED, AlertState.new.value),
    "escalate": (OPEN_STATES, None),
}
#: the feed's name of each action's change
CHANGE_NAMES = {"acknowledge": "acknowledged", "dispatch": "dispatched", "resolve": "resolved",
                "false_alarm": "false_alarm", "reopen": "reopened", "escalate": "escalated"}


@dataclass(frozen=True, slots=True)
class ActionInput:
    assignee: str | None = None  # dispatch: who is sent
    feedback: str | None = None  # resolve: what was done
    evidence_file: str | None = None  # resolve: a stored file, optional
    reason: str | None = None  # false alarm, reopen, escalate


def _track(alert: Alert) -> dict[str, Any]:
    return {"state": alert.state, "level_unit_id": alert.level_unit_id, "severity": alert.severity,
            "escalations": alert.escalations, "assignee": alert.assignee}


def _required(value: str | None, field: str, action: str) -> str:
    if value is None or not value.strip():
        raise InvalidInput(f"{action} needs {field}", field=field)
    return value.strip()


def set_deadlines(alert: Alert, policy: AlertPolicy, unit_path: str) -> None:
    """Deadlines for the alert's current level and state, counted from when it got there."""
    depth = level_index(path_ids(unit_path), alert.level_unit_id)
    alert.ack_due_at, alert.resolve_due_at = policy.deadlines(depth, alert.severity, alert.level_since, alert.state)


def apply(alert: Alert, action: str, actor: str, given: ActionInput, policy: AlertPolicy, unit_path: str,
          now: datetime) -> tuple[Change, dict[str, Any]]:
    """Do `action` to `alert` (owned by the unit at `unit_path`); 409 naming the state when
    the action cannot start from it, 422 naming the missing field."""
    if action not in ACTIONS:
        raise InvalidInput(f"unknown action {action!r}; one of {', '.join(ACTIONS)}", field="action")
    sources, target = ACTIONS[action]
    if alert.state not in sources:
        raise Conflict(f"alert {alert.code} is {alert.state}; {action} needs {' or '.join(sources)}",
                       state=alert.state, alert_id=alert.id)
    before = _track(alert)
    chain = path_ids(unit_path)
    if action == "acknowledge":
        alert.acknowledged_at = now
    elif action == "dispatch":
        alert.assignee = _required(given.assignee, "assignee", action)
        alert.acknowledged_at = alert.acknowledged_at or now
        alert.dispatched_at = now
    elif action == "resolve":
        alert.feedback = _required(given.feedback, "feedback", action)
        alert.evidence_file = given.evidence_file
        alert.closed_at = now
    elif action == "false_alarm":
        alert.reason = _required(given.reason, "reason", action)
        alert.closed_at = now
    elif action == "reopen":
        alert.reason = _required(given.reason, "reason", action)
        alert.closed_at = alert.acknowledged_at = alert.dispatched_at = None
        alert.level_since = now
    elif action == "escalate":
        level = level_index(chain, alert.level_unit_id)
        if level == 0:
            raise Conflict(f"alert {alert.code} is already at the top of the chain", state=alert.state,
                           alert_id=alert.id)
        alert.level_unit_id = chain[level - 1]
        alert.addressed = policy.addressed(chain, level - 1, alert.severity)
        alert.escalations += 1
        alert.level_since = now
        alert.reason = given.reason.strip() if given.reason else alert.reason
    if target is not None:
        alert.state = target
    if action in ("resolve", "false_alarm", "reopen"):
        alert.clears_at = None  # closed by a person, or open again: no recovery clock runs
    set_deadlines(alert, policy, unit_path)
    after = _track(alert) | {k: v for k, v in asdict(given).items() if v is not None}
    row = audit_row(actor, f"alert.{action}", "alert", alert.id, alert.unit_id, before, after)
    return Change(alert, CHANGE_NAMES[action], actor, unit_path), row


def settle(alert: Alert, now: datetime, feedback: str) -> dict[str, Any]:
    """The system resolves `alert` because its cause went away (a camera back online long
    enough, a disk with room again); the audit row's `before`. The caller announces it."""
    before = {"state": alert.state}
    alert.state, alert.closed_at, alert.feedback = AlertState.resolved.value, now, feedback
    alert.ack_due_at = alert.resolve_due_at = alert.clears_at = None
    return before


def overdue(alert: Alert, now: datetime) -> str | None:
    """Which deadline of an open alert has passed ('acknowledge', 'resolve'), if any."""
    if alert.state == AlertState.new.value and alert.ack_due_at is not None and alert.ack_due_at <= now:
        return "acknowledge"
    if alert.is_open and alert.resolve_due_at is not None and alert.resolve_due_at <= now:
        return "resolve"
    return None
