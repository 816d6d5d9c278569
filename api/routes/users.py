"""`/api/v1/auth/token` and `/api/v1/users`: sign-in, and admins managing their subtree's people."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import select

from api.auth import USER_ADMINS, Principal, User, authenticate, hash_password, issue_token, revoke_tokens
from api.deps import PathId, CurrentUser, ServicesDep, SessionDep, require
from api.schemas.users import TokenOut, TokenRequest, UserCreate, UserOut, UserUpdate
from config.errors import Conflict, Forbidden, NotFound
from ingest import audit
from ingest.units import get_unit, subtree_ids

router = APIRouter(prefix="/api/v1", tags=["users"])
Admin = Annotated[Principal, Depends(require(USER_ADMINS))]


@router.post("/auth/token", response_model=TokenOut)
def sign_in(body: TokenRequest, session: SessionDep, services: ServicesDep) -> dict[str, object]:
    user = authenticate(session, body.username, body.password.get_secret_value())
    token, expires = issue_token(session, user, timedelta(hours=services.settings.token_ttl_hours), "sign-in")
    session.commit()
    return {"access_token": token, "expires_at": expires}


@router.get("/users/me", response_model=UserOut)
def me(user: CurrentUser, session: SessionDep) -> User:
    return session.get_one(User, user.user_id)


def _user_in_scope(session: SessionDep, user_id: int, scope: str) -> User:
    found = session.scalar(select(User).where(User.id == user_id, User.unit_id.in_(subtree_ids(scope))))
    if found is None:
        raise NotFound(f"user {user_id} not found", user_id=user_id)
    return found


@router.get("/users", response_model=list[UserOut])
def list_users(admin: Admin, session: SessionDep) -> list[User]:
    return list(session.scalars(select(User).where(User.unit_id.in_(subtree_ids(admin.scope))).order_by(User.id)))


@router.post("/users", response_model=UserOut, status_code=201)
def add_user(body: UserCreate, admin: Admin, session: SessionDep) -> User:
    get_unit(session, body.unit_id, admin.scope)
    if session.scalar(select(User.id).where(User.username == body.username)) is not None:
        raise Conflict(f"username {body.username} is taken", field="username")
    user = User(username=body.username, display_name=body.display_name, role=body.role.value,
                unit_id=body.unit_id, password_hash=hash_password(body.password.get_secret_value()))
    session.add(user)
    session.flush()
    audit.record(session, admin.actor, "user.create", "user", user.id, user.unit_id, None, user.snapshot())
    session.commit()
    return user


@router.get("/users/{user_id}", response_model=UserOut)
def read_user(user_id: PathId, admin: Admin, session: SessionDep) -> User:
    return _user_in_scope(session, user_id, admin.scope)


@router.patch("/users/{user_id}", response_model=UserOut)
def change_user(user_id: PathId, body: UserUpdate, admin: Admin, session: SessionDep) -> User:
    user = _user_in_scope(session, user_id, admin.scope)
    if user.id == admin.user_id and ({"role", "unit_id", "active"} & body.model_fields_set):
        raise Forbidden("you cannot change your own role, unit or activity", field="role")
    before = user.snapshot()
    if body.unit_id is not None:
        get_unit(session, body.unit_id, admin.scope)
        user.unit_id = body.unit_id
    if body.role is not None:
        user.role = body.role.value
    if body.display_name is not None:
        user.display_name = body.display_name
    if body.active is not None:
        user.active = body.active
    if body.password is not None:
        user.password_hash = hash_password(body.password.get_secret_value())
    if body.password is not None or body.active is False:
        revoke_tokens(session, user.id)
    session.flush()
    after = dict(user.snapshot(), password_changed=body.password is not None)
    audit.record(session, admin.actor, "user.update", "user", user.id, user.unit_id, before, after)
    session.commit()
    return user
