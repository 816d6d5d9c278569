"""People and their access: users bound to a unit with one role, and bearer tokens.

Passwords are hashed with Argon2id. Tokens are 256-bit random strings; only their SHA-256 is
stored, so a copy of the database grants nobody access, and a token can be revoked by row.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Boolean, ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from config.database import Base, UTCDateTime, utcnow
from config.errors import Unauthorized
from ingest.units import Unit

_hasher = PasswordHasher()


class Role(str, enum.Enum):
    admin = "admin"
    operator = "operator"
    safety_official = "safety_official"
    technician = "technician"
    investigator = "investigator"


ALERT_HANDLERS = frozenset({Role.admin, Role.operator})
CAMERA_WRITERS = frozenset({Role.admin, Role.technician})
PTZ_OPERATORS = frozenset({Role.admin, Role.operator, Role.technician})
UNIT_WRITERS = frozenset({Role.admin})
USER_ADMINS = frozenset({Role.admin})


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def snapshot(self) -> dict[str, object]:
        return {"id": self.id, "username": self.username, "display_name": self.display_name,
                "role": self.role, "unit_id": self.unit_id, "active": self.active}


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: who, which role, and the unit subtree they may touch."""

    user_id: int
    username: str
    role: Role
    unit_id: int
    scope: str  # materialised path of the user's unit

    @property
    def actor(self) -> str:
        return f"user:{self.username}"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, user: User, ttl: timedelta, label: str | None = None) -> tuple[str, datetime]:
    token = "lk_" + secrets.token_urlsafe(32)
    expires = utcnow() + ttl
    session.add(ApiToken(user_id=user.id, token_hash=_digest(token), label=label, expires_at=expires))
    session.flush()
    return token, expires


def authenticate(session: Session, username: str, password: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.active or not verify_password(user.password_hash, password):
        raise Unauthorized("wrong username or password", field="username")
    return user


def principal_for_token(session: Session, token: str) -> Principal:
    row = session.execute(
        select(User, Unit.path, ApiToken.expires_at)
        .join(ApiToken, ApiToken.user_id == User.id)
        .join(Unit, Unit.id == User.unit_id)
        .where(ApiToken.token_hash == _digest(token))
    ).first()
    if row is None:
        raise Unauthorized("invalid bearer token")
    user, path, expires = row
    if expires < utcnow():
        raise Unauthorized("bearer token expired")
    if not user.active:
        raise Unauthorized("user is disabled")
    return Principal(user.id, user.username, Role(user.role), user.unit_id, path)


def revoke_tokens(session: Session, user_id: int) -> None:
    for token in session.scalars(select(ApiToken).where(ApiToken.user_id == user_id)):
        session.delete(token)
