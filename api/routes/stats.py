"""`/api/v1/stats`: the KPIs of a unit and every unit under it, rolled up the tree."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from alerts.stats import unit_stats
from api.deps import CurrentUser, Moment, ServicesDep, SessionDep
from api.schemas.stats import StatsOut
from config.database import utcnow
from config.errors import InvalidInput
from registry.fields import DbId
from registry.units import get_unit

router = APIRouter(prefix="/api/v1/stats", tags=["alerts"])


@router.get("", response_model=StatsOut)
def stats(
    user: CurrentUser,
    session: SessionDep,
    services: ServicesDep,
    unit: Annotated[DbId | None, Query(description="default: your own unit")] = None,
    since: Annotated[Moment | None, Query(description="alerts created from; default: 30 days before until")] = None,
    until: Annotated[Moment | None, Query(description="...until (excluded); default: now")] = None,
) -> dict[str, object]:
    """Per unit of the subtree (each figure covers the unit and everything under it): alerts by
    kind and state; seconds to acknowledge and to resolve (median, p90); closure rate (resolved
    or false alarm / all), escalation rate (escalated at least once / all), false-alarm rate
    (false alarms / closed); enabled cameras and their online rate now."""
    root = get_unit(session, unit or user.unit_id, user.scope)
    until = until or utcnow()
    since = since or until - timedelta(days=30)
    if since >= until:
        raise InvalidInput("since must be before until", field="since")
    return {"since": since, "until": until,
            "units": unit_stats(session, services.registry, root.path, since, until)}
