"""`/api/v1/alerts`: the alerts of the caller's part of the county, and the actions on them."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from api.alerting import store
from api.alerting.lifecycle import ActionInput
from api.alerting.model import AlertState
from api.auth import ALERT_HANDLERS, Principal
from api.deps import CurrentUser, PathId, ServicesDep, SessionDep, require
from api.schemas.alerts import ActionBody, AlertDetail, AlertEventOut, AlertOut, AlertPage
from config.alerting import SEVERITIES, Severity
from config.errors import InvalidInput, NotFound
from ingest.camera_store import decode_cursor, encode_cursor
from ingest.fields import DbId

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
Handler = Annotated[Principal, Depends(require(ALERT_HANDLERS))]
MAX_EVIDENCE_BYTES = 20 * 1024 * 1024
Action = Literal["acknowledge", "dispatch", "false_alarm", "reopen", "escalate"]  # resolve: its own route
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@router.get("", response_model=AlertPage)
def list_alerts(
    user: CurrentUser,
    session: SessionDep,
    state: Annotated[list[AlertState], Query(max_length=5)] = [],  # noqa: B006
    kind: Annotated[list[str], Query(max_length=16)] = [],  # noqa: B006
    min_severity: Severity | None = None,
    unit: Annotated[DbId | None, Query(description="unit id: alerts of its whole subtree")] = None,
    camera: Annotated[DbId | None, Query()] = None,
    open: Annotated[bool, Query(description="only new, acknowledged and dispatched alerts")] = False,
    since: datetime | None = None,
    until: datetime | None = None,
    updated_since: Annotated[datetime | None, Query(description="changed at or after this time (polling)")] = None,
    cursor: Annotated[str | None, Query(max_length=64, description="newest first; continue before this one")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, object]:
    flt = store.AlertFilter(
        states=[s.value for s in state], kinds=kind, unit_id=unit, camera_id=camera, open_only=open,
        min_severity=None if min_severity is None else SEVERITIES.index(min_severity), since=since, until=until,
        updated_since=updated_since)
    rows, more = store.list_alerts(session, user.scope, flt, decode_cursor(cursor) if cursor else None, limit)
    return {"items": [row.public() for row in rows], "next_cursor": encode_cursor(rows[-1].id) if more else None}


@router.get("/{alert_id}", response_model=AlertDetail)
def get_alert(alert_id: PathId, user: CurrentUser, session: SessionDep) -> dict[str, object]:
    alert, _ = store.get_alert(session, alert_id, user.scope)
    return alert.public() | {"history": store.history_of(session, alert)}


@router.get("/{alert_id}/events", response_model=list[AlertEventOut])
def alert_events(alert_id: PathId, user: CurrentUser, session: SessionDep,
                 limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> list[object]:
    alert, _ = store.get_alert(session, alert_id, user.scope)
    return store.events_of(session, alert, limit)  # type: ignore[return-value]


@router.get("/{alert_id}/evidence", response_class=FileResponse, responses={200: {"content": {"*/*": {}}}})
def alert_evidence(alert_id: PathId, user: CurrentUser, session: SessionDep, services: ServicesDep) -> FileResponse:
    alert, _ = store.get_alert(session, alert_id, user.scope)
    if not alert.evidence_file:
        raise NotFound(f"alert {alert_id} has no evidence file", alert_id=alert_id)
    path = _evidence_root(services.settings.data_dir) / alert.evidence_file
    if not path.is_file():
        raise NotFound(f"the evidence file of alert {alert_id} is gone", alert_id=alert_id)
    return FileResponse(path, filename=path.name.split("_", 1)[-1])


@router.post("/{alert_id}/resolve", response_model=AlertOut)
async def resolve(
    alert_id: PathId,
    user: Handler,
    services: ServicesDep,
    feedback: Annotated[str, Form(min_length=1, max_length=8000, description="what was done")],
    evidence: UploadFile | None = None,
) -> dict[str, object]:
    """Close the alert with feedback (a form: `feedback`, and an optional `evidence` file)."""
    with services.sessions() as session:
        store.get_alert(session, alert_id, user.scope)  # 404 before anything is stored
    stored = await _store_evidence(services.settings.data_dir, alert_id, evidence) if evidence else None
    alert = await run_in_threadpool(store.act, services.sessions, alert_id, "resolve", user.actor,
                                    ActionInput(feedback=feedback, evidence_file=stored),
                                    services.alert_policy, user.scope, services.redis)
    return alert.public()


@router.post("/{alert_id}/{action}", response_model=AlertOut)
def act(alert_id: PathId, action: Action, user: Handler, services: ServicesDep,
        body: ActionBody | None = None) -> dict[str, object]:
    """acknowledge, dispatch (`assignee`), false_alarm (`reason`), reopen (`reason`), escalate
    (optional `reason`). A 409 names the alert's state when the action cannot start from it."""
    given = body or ActionBody()
    alert = store.act(services.sessions, alert_id, action, user.actor,
                      ActionInput(assignee=given.assignee, reason=given.reason),
                      services.alert_policy, user.scope, services.redis)
    return alert.public()


def _evidence_root(data_dir: Path) -> Path:
    return data_dir / "evidence"


async def _store_evidence(data_dir: Path, alert_id: int, upload: UploadFile) -> str:
    """Save an uploaded evidence file under data_dir/evidence/<alert>/; its relative path."""
    data = await upload.read(MAX_EVIDENCE_BYTES + 1)
    if len(data) > MAX_EVIDENCE_BYTES:
        raise InvalidInput(f"evidence file is larger than {MAX_EVIDENCE_BYTES // 2**20} MiB", field="evidence")
    name = _SAFE_NAME.sub("_", Path(upload.filename or "evidence").name)[-100:] or "evidence"
    relative = Path(str(alert_id)) / f"{uuid.uuid4().hex[:12]}_{name}"
    target = _evidence_root(data_dir) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return str(relative)
