"""`/api/v1/auth/...` (sign-in, sign-out) and `/api/v1/users` (admins managing their subtree's
people, and everyone's own password).

Sign-in is the one route a stranger may call as often as they like, so it is built for that:
each try is counted before its password is checked (api/login_throttle.py: growing delays per
username and per address, 429 with Retry-After), every try that is checked costs exactly one
Argon2 verification whether the user exists or not (`dummy_hash`), and the hashing runs off the
event loop behind a semaphore (api/passwords.py), so a flood of sign-ins leaves the consoles'
requests their threads.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import select

from api.deps import CurrentUser, PathId, ServicesDep, SessionDep, require
from api.login_throttle import throttle_of
from api.passwords import check_password, hashing_of
from api.schemas.users import PasswordChange, TokenOut, TokenRequest, TooManyTries, UserCreate, UserOut, UserUpdate
from api.services import Services
from config.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from registry import audit
from registry.units import get_unit, subtree_ids
from registry.users import (
    USER_ADMINS,
    Principal,
    User,
    find_user,
    hash_password,
    issue_token,
    purge_expired_tokens,
    revoke_token,
    revoke_tokens,
    token_digest,
    username_taken,
)

log = logging.getLogger("lookout.auth")
router = APIRouter(prefix="/api/v1", tags=["users"])
Admin = Annotated[Principal, Depends(require(USER_ADMINS))]
PURGE_EVERY_SECONDS = 60.0  # expired tokens are deleted at a sign-in at most this often per process
THROTTLED = {429: {"model": TooManyTries, "description": "too many tries: wait `Retry-After` seconds"}}


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _request_token(request: Request) -> str:
    """The bearer token of a request that `CurrentUser` already accepted."""
    return request.headers.get("authorization", "").partition(" ")[2].strip()


def _too_many(wait: float) -> JSONResponse:
    seconds = max(1, math.ceil(wait))
    return JSONResponse({"detail": f"too many sign-in tries: wait {seconds} s before the next one",
                         "field": "username", "retry_after": seconds},
                        status_code=429, headers={"Retry-After": str(seconds)})


@dataclass(frozen=True, slots=True)
class _Candidate:
    """What sign-in needs of the named user, or of nobody (hash None: checked against the dummy)."""

    user_id: int | None
    password_hash: str | None
    active: bool


def _candidate(services: Services, username: str) -> _Candidate:
    with services.sessions() as session:
        user = find_user(session, username)
        if user is None:
            return _Candidate(None, None, False)
        return _Candidate(user.id, user.password_hash, user.active)


def _issue(request: Request, services: Services, user_id: int) -> tuple[str, Any]:
    with services.sessions() as session:
        user = session.get_one(User, user_id)
        token, expires = issue_token(session, user, timedelta(hours=services.settings.token_ttl_hours), "sign-in")
        now = time.monotonic()
        if now - getattr(request.app.state, "tokens_purged_at", -math.inf) >= PURGE_EVERY_SECONDS:
            request.app.state.tokens_purged_at = now
            purged = purge_expired_tokens(session)
            if purged:
                log.info("expired_tokens_purged", extra={"count": purged})
        session.commit()
    return token, expires


@router.post("/auth/token", response_model=TokenOut, responses=THROTTLED)
async def sign_in(body: TokenRequest, request: Request, services: ServicesDep) -> Any:
    """A bearer token for a username (any case) and password. Wrong tries are throttled: after
    a few, each one waits longer (429 with `Retry-After`), and a try during the wait counts too."""
    throttle = throttle_of(request.app)
    address = _address(request)
    wait = await run_in_threadpool(throttle.admit, body.username, address)
    if wait > 0:
        log.warning("sign_in_throttled", extra={"address": address, "wait_s": round(wait, 1)})
        return _too_many(wait)
    candidate = await run_in_threadpool(_candidate, services, body.username)
    matches = await hashing_of(request.app).verify(candidate.password_hash, body.password.get_secret_value())
    if candidate.user_id is None or not matches or not candidate.active:
        # the username is not logged when unknown: people type their password into it
        log.info("sign_in_refused", extra={"user_id": candidate.user_id, "address": address})
        raise Unauthorized("wrong username or password", field="username")
    await run_in_threadpool(throttle.succeeded, body.username, address)
    token, expires = await run_in_threadpool(_issue, request, services, candidate.user_id)
    return {"access_token": token, "expires_at": expires}


@router.post("/auth/logout", status_code=204, response_class=Response)
def sign_out(user: CurrentUser, request: Request, session: SessionDep) -> Response:
    """Revoke the token of this request (and with it its open live feeds); others stay."""
    revoke_token(session, _request_token(request))
    session.commit()
    log.info("signed_out", extra={"user_id": user.user_id})
    return Response(status_code=204)


@router.get("/users/me", response_model=UserOut)
def me(user: CurrentUser, session: SessionDep) -> User:
    return session.get_one(User, user.user_id)


def _set_own_password(services: Services, user: Principal, password_hash: str, keep: str) -> None:
    with services.sessions() as session:
        row = session.get_one(User, user.user_id)
        before = row.snapshot()
        row.password_hash = password_hash
        revoke_tokens(session, row.id, keep=keep)
        audit.record(session, user.actor, "user.password_change", "user", row.id, row.unit_id, before,
                     dict(row.snapshot(), password_changed=True))
        session.commit()


@router.post("/users/me/password", status_code=204, response_class=Response,
             responses={**THROTTLED, 403: {"description": "the old password is wrong"}})
async def change_own_password(body: PasswordChange, user: CurrentUser, request: Request,
                              services: ServicesDep) -> Response:
    """Change your own password. The old one is required (a token alone, say at a console left
    signed in, does not let anyone take the account), and is throttled like sign-in. Every other
    token of yours is revoked; the one of this request stays."""
    old, new = body.old_password.get_secret_value(), body.new_password.get_secret_value()
    check_password(new, user.username, services.settings.security.password_min_length, field="new_password")
    if new == old:
        raise InvalidInput("the new password is the old one", field="new_password")
    throttle = throttle_of(request.app)
    address = _address(request)
    wait = await run_in_threadpool(throttle.admit, user.username, address)
    if wait > 0:
        return _too_many(wait)
    candidate = await run_in_threadpool(_candidate, services, user.username)
    hashing = hashing_of(request.app)
    if not await hashing.verify(candidate.password_hash, old):
        raise Forbidden("the old password is wrong", field="old_password")
    await run_in_threadpool(throttle.succeeded, user.username, address)
    new_hash = await hashing.hash(new)
    keep = token_digest(_request_token(request))
    await run_in_threadpool(_set_own_password, services, user, new_hash, keep)
    return Response(status_code=204)


def _user_in_scope(session: SessionDep, user_id: int, scope: str) -> User:
    found = session.scalar(select(User).where(User.id == user_id, User.unit_id.in_(subtree_ids(scope))))
    if found is None:
        raise NotFound(f"user {user_id} not found", user_id=user_id)
    return found


@router.get("/users", response_model=list[UserOut])
def list_users(admin: Admin, session: SessionDep) -> list[User]:
    return list(session.scalars(select(User).where(User.unit_id.in_(subtree_ids(admin.scope))).order_by(User.id)))


@router.post("/users", response_model=UserOut, status_code=201)
def add_user(body: UserCreate, admin: Admin, session: SessionDep, services: ServicesDep) -> User:
    get_unit(session, body.unit_id, admin.scope)
    password = body.password.get_secret_value()
    check_password(password, body.username, services.settings.security.password_min_length)
    if username_taken(session, body.username):
        raise Conflict(f"username {body.username} is taken (names are the same in any case)", field="username")
    user = User(username=body.username, display_name=body.display_name, role=body.role.value,
                unit_id=body.unit_id, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    audit.record(session, admin.actor, "user.create", "user", user.id, user.unit_id, None, user.snapshot())
    session.commit()
    return user


@router.get("/users/{user_id}", response_model=UserOut)
def read_user(user_id: PathId, admin: Admin, session: SessionDep) -> User:
    return _user_in_scope(session, user_id, admin.scope)


@router.patch("/users/{user_id}", response_model=UserOut)
def change_user(user_id: PathId, body: UserUpdate, admin: Admin, request: Request, session: SessionDep,
                services: ServicesDep) -> User:
    """A new password or disabling revokes every token of the person (their open live feeds end
    within seconds); a new password also lifts a sign-in wait on their name."""
    user = _user_in_scope(session, user_id, admin.scope)
    if user.id == admin.user_id and ({"role", "unit_id", "active"} & body.model_fields_set):
        raise Forbidden("you cannot change your own role, unit or activity", field="role")
    if body.password is not None:
        check_password(body.password.get_secret_value(), user.username,
                       services.settings.security.password_min_length)
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
    if body.password is not None:
        throttle_of(request.app).forget_user(user.username)
    return user
