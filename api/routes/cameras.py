"""`/api/v1/cameras`: the camera registry, filtered and paged, always inside the caller's scope."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response, UploadFile

from api.deps import CurrentUser, PathId, ServicesDep, SessionDep, require
from api.schemas.cameras import (
    CameraCreate,
    CameraOut,
    CameraPage,
    CameraRulesOut,
    CameraUpdate,
    CameraUpdateOut,
    ImportProblemsPage,
    ImportReportOut,
    ImportRunOut,
    StreamFiguresOut,
)
from config.errors import Conflict
from ingest.stream_figures import read_figures
from registry import camera_imports
from registry.camera_store import CameraFilter, parse_bbox
from registry.cameras import CameraStatus
from registry.csv_file import template
from registry.csv_import import CameraImporter
from registry.fields import DbId, Tag, Text, decode_cursor, encode_cursor
from registry.rules_spec import RulesSpec, stored_spec
from registry.users import CAMERA_WRITERS, Principal

router = APIRouter(prefix="/api/v1/cameras", tags=["cameras"])
Writer = Annotated[Principal, Depends(require(CAMERA_WRITERS))]


@router.get("", response_model=CameraPage)
def list_cameras(
    user: CurrentUser,
    session: SessionDep,
    services: ServicesDep,
    network: Annotated[list[str], Query(description="repeat for several", max_length=32)] = [],  # noqa: B006
    status: Annotated[list[CameraStatus], Query(max_length=4)] = [],  # noqa: B006
    unit: Annotated[DbId | None, Query(description="unit id: cameras of its whole subtree")] = None,
    tag: Annotated[Tag | None, Query()] = None,
    q: Annotated[Text | None, Query(description="text inside the name or address, or the start of the device id")] = None,
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat (WGS-84)", max_length=200)] = None,
    enabled: bool | None = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    with_total: bool = False,
) -> dict[str, object]:
    for name in network:
        services.registry.check_network(name)
    flt = CameraFilter(
        networks=network, statuses=[s.value for s in status], unit_id=unit, tag=tag, text=q or None,
        bbox=parse_bbox(bbox) if bbox else None, enabled=enabled,
    )
    after = decode_cursor(cursor) if cursor else 0
    rows, last = services.registry.list(session, user.scope, flt, after_id=after, limit=limit)
    return {
        "items": [row.public() for row in rows],
        "next_cursor": encode_cursor(last) if last is not None else None,
        "total": services.registry.count(session, user.scope, flt) if with_total else None,
    }


@router.post("", response_model=CameraOut, status_code=201)
def create_camera(body: CameraCreate, user: Writer, session: SessionDep, services: ServicesDep) -> dict[str, object]:
    camera = services.registry.create(session, body, user.scope, user.actor)
    session.commit()
    services.registry.feed.publish("create", camera.id)
    return camera.public()


@router.get("/import/template", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def import_template(user: CurrentUser) -> Response:
    """The CSV template, UTF-8 with BOM so that spreadsheet programs open it correctly."""
    return Response(
        content="\ufeff" + template(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="lookout-cameras-template.csv"'},
    )


@router.post("/import", response_model=ImportReportOut, responses={413: {"description": "too many rows or bytes"}})
def import_cameras(
    file: UploadFile, user: Writer, services: ServicesDep, dry_run: bool = False
) -> dict[str, object]:
    """Upsert cameras from a CSV file (UTF-8 or GBK) inside the caller's scope; bad rows are
    reported by line number.

    The upload is read from its spool file as a stream and written in short batches, so
    alert work never waits long for it; at most `security.import_max_rows` rows. The reply
    holds the counts and the first `security.import_errors_shown` errors; `errors_url` lists
    every one (and every notice)."""
    security = services.settings.security  # the file's size is capped before it is read (api.middleware)
    with services.sessions() as session:
        report = CameraImporter(
            services.registry, session, user.scope, user.actor, max_rows=security.import_max_rows,
            errors_shown=security.import_errors_shown, keep_days=security.import_keep_days,
        ).run(file.file, dry_run=dry_run)
    return {**asdict(report), "errors_url": f"{router.prefix}/import/{report.import_id}/errors"}


@router.get("/import/{import_id}", response_model=ImportRunOut)
def import_run(import_id: PathId, user: Writer, session: SessionDep) -> dict[str, object]:
    """An import's record: its state while it runs, and its counts (your unit's and below)."""
    run = camera_imports.visible(session, import_id, user.scope)
    return {**run.summary(), "errors_url": f"{router.prefix}/import/{run.id}/errors"}


@router.get("/import/{import_id}/errors", response_model=ImportProblemsPage)
def import_errors(
    import_id: PathId, user: Writer, session: SessionDep,
    after_line: Annotated[int, Query(ge=0, le=2**31 - 1, description="continue after this line")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    kind: Annotated[Literal["error", "notice"] | None, Query(description="only errors or only notices")] = None,
) -> dict[str, object]:
    """Every refused row (`error`) and every row applied with a warning (`notice`) of an import,
    in line order, a page at a time; only for imports of your unit and below."""
    camera_imports.visible(session, import_id, user.scope)
    rows = camera_imports.problems(session, import_id, after_line, limit + 1, kind)
    more = len(rows) > limit
    rows = rows[:limit]
    return {"import_id": import_id,
            "items": [{"line": r.line, "kind": r.kind, "message": r.message} for r in rows],
            "next_after_line": rows[-1].line if more and rows else None}


@router.get("/{camera_id}", response_model=CameraOut)
def get_camera(camera_id: PathId, user: CurrentUser, session: SessionDep, services: ServicesDep) -> dict[str, object]:
    return services.registry.get(session, camera_id, user.scope).public()


@router.get("/{camera_id}/stream", response_model=StreamFiguresOut)
def camera_stream(camera_id: PathId, user: CurrentUser, session: SessionDep, services: ServicesDep) -> dict[str, object]:
    """What the worker reading this camera measures now (empty while no worker reads it)."""
    services.registry.get(session, camera_id, user.scope)
    figures = read_figures(services.redis, [camera_id]).get(camera_id) if services.redis is not None else None
    return {"camera_id": camera_id, **(figures or {})}


def rules_out(camera_id: int, stored: str | None) -> dict[str, object]:
    try:
        rules = stored_spec(stored) or RulesSpec()
    except ValueError as exc:  # edited in the database by hand; the worker runs the defaults meanwhile
        raise Conflict(f"camera {camera_id}: its stored rules no longer validate ({str(exc)[:300]}); "
                       "PUT new rules or DELETE them", camera_id=camera_id) from None
    return {"camera_id": camera_id, "custom": stored is not None, "rules": rules}


@router.get("/{camera_id}/rules", response_model=CameraRulesOut)
def get_rules(camera_id: PathId, user: CurrentUser, session: SessionDep, services: ServicesDep) -> dict[str, object]:
    """The zones, thresholds, persistence, cooldown, armed hours and crowd levels in force."""
    camera = services.registry.get(session, camera_id, user.scope)
    return rules_out(camera.id, camera.detection_rules)


@router.put("/{camera_id}/rules", response_model=CameraRulesOut)
def put_rules(
    camera_id: PathId, body: RulesSpec, user: Writer, session: SessionDep, services: ServicesDep
) -> dict[str, object]:
    """Replace the camera's rules (fields left out take the defaults); the worker reading the
    camera applies them within a second."""
    camera = services.registry.get(session, camera_id, user.scope)
    services.registry.set_rules(session, camera, body, user.actor)
    session.commit()
    services.registry.feed.publish("update", camera.id)
    return rules_out(camera.id, camera.detection_rules)


@router.delete("/{camera_id}/rules", response_model=CameraRulesOut)
def delete_rules(camera_id: PathId, user: Writer, session: SessionDep, services: ServicesDep) -> dict[str, object]:
    """Back to the defaults."""
    camera = services.registry.get(session, camera_id, user.scope)
    services.registry.set_rules(session, camera, None, user.actor)
    session.commit()
    services.registry.feed.publish("update", camera.id)
    return rules_out(camera.id, None)


@router.patch("/{camera_id}", response_model=CameraUpdateOut)
def update_camera(
    camera_id: PathId, body: CameraUpdate, user: Writer, session: SessionDep, services: ServicesDep
) -> dict[str, object]:
    """Change the fields given. Stored credentials belong to the host and port they were given
    for: a new host or port in a stream URL or the ONVIF endpoint drops them (the reply says
    so in `credentials_dropped`) unless `username`/`password` come in the same request."""
    camera = services.registry.get(session, camera_id, user.scope)
    done = services.registry.update(session, camera, body, user.scope, user.actor)
    session.commit()
    services.registry.feed.publish("update", camera.id)
    return {**camera.public(), "credentials_dropped": done.credentials_dropped, "notice": done.notice}


@router.delete("/{camera_id}", status_code=204)
def delete_camera(camera_id: PathId, user: Writer, session: SessionDep, services: ServicesDep) -> Response:
    camera = services.registry.get(session, camera_id, user.scope)
    services.registry.delete(session, camera, user.actor)
    session.commit()
    services.registry.feed.publish("delete", camera_id)
    return Response(status_code=204)
