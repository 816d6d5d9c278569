"""Dependencies every route declares: the session, the caller, the role check.

The caller's unit scope travels inside `Principal`; data-layer functions take it as a
required argument, so the subtree check is applied in one place for every route.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, Field
from sqlalchemy.orm import Session

from api.services import Services
from config.errors import Forbidden, Unauthorized
from registry.fields import DB_INT_MAX
from registry.users import Principal, Role, principal_for_token

#: A row id in a URL path: bounded so that no id reaches the database as an overflow.
PathId = Annotated[int, Path(ge=1, le=DB_INT_MAX)]

#: the times a query may name: anything outside is a typo or an attack, and the extremes of
#: Python's datetime overflow on the way into PostgreSQL (0001-01-01 with an offset, 9999-12-31)
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)


def _bounded_moment(value: datetime) -> datetime:
    """A time between `EARLIEST` and `LATEST`, as UTC; a time without an offset is read as UTC.
    The year is checked before any arithmetic, so that no offset can overflow the conversion."""
    if not EARLIEST.year - 1 <= value.year <= LATEST.year + 1:
        raise ValueError(f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)")
    moment = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if not EARLIEST <= moment <= LATEST:
        raise ValueError(f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)")
    return moment


#: A time in a query or body: ISO 8601 (an offset, or none for UTC), years 2000 to 2100.
Moment = Annotated[
    datetime,
    AfterValidator(_bounded_moment),
    Field(description="ISO 8601 time between 2000-01-01 and 2100-12-31; without an offset it is UTC",
          json_schema_extra={"examples": ["2024-05-01T08:00:00+08:00"]}),
]

_bearer = HTTPBearer(auto_error=False, description="Token from POST /api/v1/auth/token or `lookout user add`.")


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    """A session for the request; writes call `commit()` themselves before answering."""
    with services.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def current_user(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token")
    principal = principal_for_token(session, credentials.credentials)
    request.state.actor = principal.username
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


def require(roles: frozenset[Role]) -> Callable[[Principal], Principal]:
    """A dependency that lets only `roles` through (403 for the others)."""

    def check(user: CurrentUser) -> Principal:
        if user.role not in roles:
            raise Forbidden(f"role {user.role.value} may not do this; needs {', '.join(sorted(r.value for r in roles))}")
        return user

    return check
