"""Dependencies every route declares: the session, the caller, the role check.

The caller's unit scope travels inside `Principal`; data-layer functions take it as a
required argument, so the subtree check is applied in one place for every route.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.auth import Principal, Role, principal_for_token
from api.services import Services
from config.errors import Forbidden, Unauthorized
from ingest.fields import DB_INT_MAX

#: A row id in a URL path: bounded so that no id reaches the database as an overflow.
PathId = Annotated[int, Path(ge=1, le=DB_INT_MAX)]

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
