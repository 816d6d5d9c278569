"""`/api/v1/units`: the county → township → village tree, inside the caller's scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import exists, select

from api.deps import CurrentUser, PathId, ServicesDep, SessionDep, require
from api.schemas.units import OnlineOut, UnitCreate, UnitOut, UnitUpdate
from registry import audit
from registry.cameras import Camera
from registry.fields import DbId
from registry.units import Unit, create_unit, delete_unit, get_unit, update_unit
from registry.users import UNIT_WRITERS, Principal, User

router = APIRouter(prefix="/api/v1/units", tags=["units"])
Admin = Annotated[Principal, Depends(require(UNIT_WRITERS))]


@router.get("", response_model=list[UnitOut])
def list_units(
    user: CurrentUser,
    session: SessionDep,
    parent: Annotated[DbId | None, Query(description="only the direct children of this unit")] = None,
) -> list[Unit]:
    query = select(Unit).where(Unit.path.startswith(user.scope, autoescape=True))
    if parent is not None:
        query = query.where(Unit.parent_id == get_unit(session, parent, user.scope).id)
    return list(session.scalars(query.order_by(Unit.path)))


@router.post("", response_model=UnitOut, status_code=201)
def add_unit(body: UnitCreate, user: Admin, session: SessionDep) -> Unit:
    unit = create_unit(session, name=body.name, code=body.code, parent_id=body.parent_id, scope=user.scope)
    audit.record(session, user.actor, "unit.create", "unit", unit.id, unit.id, None, unit.snapshot())
    session.commit()
    return unit


@router.get("/{unit_id}", response_model=UnitOut)
def read_unit(unit_id: PathId, user: CurrentUser, session: SessionDep) -> Unit:
    return get_unit(session, unit_id, user.scope)


@router.get("/{unit_id}/online", response_model=OnlineOut)
def unit_online(unit_id: PathId, user: CurrentUser, session: SessionDep, services: ServicesDep) -> dict[str, object]:
    """The online rate the centers are judged by, for this unit and everything under it."""
    unit = get_unit(session, unit_id, user.scope)
    counts = services.registry.online_by_unit(session, unit.path)[unit.id]
    total = sum(counts.values())
    return {"unit_id": unit.id, "cameras": total, **{k: counts.get(k, 0) for k in ("online", "offline", "degraded", "unknown")},
            "online_rate": round(counts.get("online", 0) / total, 4) if total else None}


@router.patch("/{unit_id}", response_model=UnitOut)
def change_unit(unit_id: PathId, body: UnitUpdate, user: Admin, session: SessionDep) -> Unit:
    unit = get_unit(session, unit_id, user.scope)
    before = unit.snapshot()
    update_unit(
        session, unit, name=body.name, code=body.code, parent_id=body.parent_id,
        move="parent_id" in body.model_fields_set, scope=user.scope,
    )
    audit.record(session, user.actor, "unit.update", "unit", unit.id, unit.id, before, unit.snapshot())
    session.commit()
    return unit


@router.delete("/{unit_id}", status_code=204)
def remove_unit(unit_id: PathId, user: Admin, session: SessionDep) -> Response:
    unit = get_unit(session, unit_id, user.scope)
    before = unit.snapshot()
    delete_unit(
        session,
        unit,
        has_cameras=bool(session.scalar(select(exists().where(Camera.unit_id == unit.id)))),
        has_users=bool(session.scalar(select(exists().where(User.unit_id == unit.id)))),
    )
    audit.record(session, user.actor, "unit.delete", "unit", unit_id, before["parent_id"], before, None)  # type: ignore[arg-type]
    session.commit()
    return Response(status_code=204)
