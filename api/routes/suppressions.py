"""`/api/v1/cameras/{id}/suppressions`: the false alarms operators taught a camera by marking
its alerts `false_alarm` — listed, and taken back one by one or all at once.

The same scope and roles as the camera's rules (anyone who sees the camera lists them; camera
writers delete them), audited, and the worker reading the camera is told at once (a `taught`
notice on the registry feed: it reloads them without restarting the stream), so a deleted suppression lets the false alarm through again within a
second. A suppression id of another camera is a 404, like a camera outside the caller's scope.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import CurrentUser, PathId, ServicesDep, SessionDep
from api.routes.cameras import Writer
from api.schemas.suppressions import SuppressionsDeleted, SuppressionsOut
from registry import suppressions

router = APIRouter(prefix="/api/v1/cameras", tags=["cameras"])


@router.get("/{camera_id}/suppressions", response_model=SuppressionsOut)
def list_suppressions(camera_id: PathId, user: CurrentUser, session: SessionDep,
                      services: ServicesDep) -> dict[str, object]:
    """Every suppression of the camera, oldest first, with how many candidates each stopped."""
    camera = services.registry.get(session, camera_id, user.scope)
    rows = suppressions.listed(session, camera.id)
    return {"camera_id": camera.id, "count": len(rows), "limit": suppressions.MAX_PER_CAMERA,
            "hits": sum(r.hits for r in rows), "items": [r.public() for r in rows]}


@router.delete("/{camera_id}/suppressions", response_model=SuppressionsDeleted)
def delete_suppressions(camera_id: PathId, user: Writer, session: SessionDep,
                        services: ServicesDep) -> dict[str, object]:
    """Forget everything operators taught the camera: its false alarms may come back."""
    camera = services.registry.get(session, camera_id, user.scope)
    deleted = suppressions.forget(session, camera, None, user.actor)
    session.commit()
    if deleted:
        services.registry.feed.publish("taught", camera.id)
    return {"camera_id": camera.id, "deleted": deleted}


@router.delete("/{camera_id}/suppressions/{suppression_id}", status_code=204)
def delete_suppression(camera_id: PathId, suppression_id: PathId, user: Writer, session: SessionDep,
                       services: ServicesDep) -> Response:
    """Forget one suppression of the camera (404 when the camera has no such suppression)."""
    camera = services.registry.get(session, camera_id, user.scope)
    suppressions.forget(session, camera, suppression_id, user.actor)
    session.commit()
    services.registry.feed.publish("taught", camera.id)
    return Response(status_code=204)
