"""`/api/v1/alerts`: the alerts of the caller's part of the county, and the actions on them."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from alerts import store
from alerts.lifecycle import ACTIONS, ActionInput
from alerts.model import AlertState
from api.deps import CurrentUser, Moment, PathId, ServicesDep, SessionDep, require
from api.schemas.alerts import ActionBody, AlertDetail, AlertEventOut, AlertOut, AlertPage
from config.alerting import SEVERITIES, Severity
from config.errors import Conflict, InvalidInput, NotFound
from config.private_files import open_private, private_dir
from registry.fields import DbId, MultilineText, decode_cursor, encode_cursor
from registry.users import ALERT_HANDLERS, Principal

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
Handler = Annotated[Principal, Depends(require(ALERT_HANDLERS))]
_PIECE = 256 * 1024
#: what evidence may be served as; everything else (HTML, SVG, XML, scripts) is a plain download
SAFE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif",
              ".webp": "image/webp", ".bmp": "image/bmp", ".mp4": "video/mp4", ".webm": "video/webm",
              ".pdf": "application/pdf", ".txt": "text/plain; charset=utf-8"}
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
    since: Annotated[Moment | None, Query(description="created at or after this time")] = None,
    until: Annotated[Moment | None, Query(description="created before this time")] = None,
    updated_since: Annotated[Moment | None, Query(description="changed at or after this time (polling)")] = None,
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
    """The evidence file, always as a download with a content type that no browser runs: an
    uploaded page or SVG must not execute as the console's origin when someone opens it."""
    alert, _ = store.get_alert(session, alert_id, user.scope)
    if not alert.evidence_file:
        raise NotFound(f"alert {alert_id} has no evidence file", alert_id=alert_id)
    path = _evidence_root(services.settings.data_dir) / alert.evidence_file
    if not path.is_file():
        raise NotFound(f"the evidence file of alert {alert_id} is gone", alert_id=alert_id)
    return FileResponse(path, filename=path.name.split("_", 1)[-1], content_disposition_type="attachment",
                        media_type=SAFE_TYPES.get(path.suffix.lower(), "application/octet-stream"),
                        headers={"X-Content-Type-Options": "nosniff",
                                 "Content-Security-Policy": "default-src 'none'; sandbox",
                                 "Cache-Control": "no-store"})


@router.post("/{alert_id}/resolve", response_model=AlertOut)
async def resolve(
    alert_id: PathId,
    user: Handler,
    services: ServicesDep,
    feedback: Annotated[MultilineText, Form(description="what was done (line breaks allowed)")],
    evidence: UploadFile | None = None,
) -> dict[str, object]:
    """Close the alert with feedback (a form: `feedback`, and an optional `evidence` file).
    The alert's scope (404) and state (409) are checked before the file is stored, and the
    file is removed again if the action then fails."""
    with services.sessions() as session:
        alert, _ = store.get_alert(session, alert_id, user.scope)  # 404 before anything is stored
        sources = ACTIONS["resolve"][0]
        if alert.state not in sources:
            raise Conflict(f"alert {alert.code} is {alert.state}; resolve needs {' or '.join(sources)}",
                           state=alert.state, alert_id=alert_id)
    root = _evidence_root(services.settings.data_dir)
    limit = services.settings.security.max_evidence_bytes
    stored = await _store_evidence(root, alert_id, evidence, limit) if evidence else None
    try:
        alert = await run_in_threadpool(store.act, services.sessions, alert_id, "resolve", user.actor,
                                        ActionInput(feedback=feedback, evidence_file=stored),
                                        services.alert_policy, user.scope, services.redis)
    except BaseException:
        if stored:  # the alert did not take it (changed state meanwhile, database away): no orphan file
            (root / stored).unlink(missing_ok=True)
        raise
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


async def _store_evidence(root: Path, alert_id: int, upload: UploadFile, limit: int) -> str:
    """Copy an uploaded evidence file to root/<alert>/ (folders 0700, the file 0600) in pieces,
    never holding it whole in memory; its path relative to `root`. 422 naming the limit when
    the file is larger than `limit` bytes (the request's body limit stops far larger ones)."""
    name = _SAFE_NAME.sub("_", Path(upload.filename or "evidence").name)[-100:] or "evidence"
    relative = Path(str(alert_id)) / f"{uuid.uuid4().hex[:12]}_{name}"
    folder = private_dir(private_dir(root) / str(alert_id))
    target = folder / relative.name
    written = 0
    try:
        with os.fdopen(open_private(target, os.O_WRONLY | os.O_EXCL), "wb") as handle:
            while piece := await upload.read(_PIECE):
                written += len(piece)
                if written > limit:
                    raise InvalidInput(f"evidence file is larger than the limit of {limit} bytes "
                                       f"({limit / 2**20:g} MiB; setting security.max_evidence_bytes)",
                                       field="evidence", limit=limit)
                await run_in_threadpool(handle.write, piece)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return str(relative)
