"""People and their access: users bound to a unit with one role, and bearer tokens.

Passwords are hashed with Argon2id. Tokens are 256-bit random strings; only their SHA-256 is
stored, so a copy of the database grants nobody access, and a token can be revoked by row
(sign-out, a new password, the person disabled); expired rows are purged.

Usernames are one name in any case (`Admin` is `admin`: a unique index on lower(username)).
Sign-in itself (throttling, one Argon2 verification for known and unknown names alike, the
hashing gate) lives in api/routes/users.py, api/login_throttle.py and api/passwords.py.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from config.database import Base, UTCDateTime, utcnow
from config.errors import Unauthorized
from registry.units import Unit

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


# `Admin` and `admin` are one name: nobody may pass for someone else by case (migration 0008).
Index("uq_users_username_lower", func.lower(User.username), unique=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # the purge of expired tokens


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


_dummy: list[str] = []
_dummy_lock = threading.Lock()


def dummy_hash() -> str:
    """A hash with the same Argon2 parameters as every real one, of a password nobody knows:
    an unknown username is checked against it, so it costs the same time as a known one.
    Made once per process (under a lock: 60 first sign-ins at once must not make 60)."""
    if not _dummy:
        with _dummy_lock:
            if not _dummy:
                _dummy.append(_hasher.hash(secrets.token_urlsafe(24)))
    return _dummy[0]


def token_digest(token: str) -> str:
    """What is stored of a token (and what the live feed re-checks): its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, user: User, ttl: timedelta, label: str | None = None) -> tuple[str, datetime]:
    token = "lk_" + secrets.token_urlsafe(32)
    expires = utcnow() + ttl
    session.add(ApiToken(user_id=user.id, token_hash=token_digest(token), label=label, expires_at=expires))
    session.flush()
    return token, expires


def find_user(session: Session, username: str) -> User | None:
    """The user of that name in any case (`Zhang` is `zhang`: unique index on lower(username))."""
    return session.scalar(select(User).where(func.lower(User.username) == username.lower()))


def username_taken(session: Session, username: str) -> bool:
    return session.scalar(select(User.id).where(func.lower(User.username) == username.lower())) is not None


def principal_for_token(session: Session, token: str) -> Principal:
    row = session.execute(
        select(User, Unit.path, ApiToken.expires_at)
        .join(ApiToken, ApiToken.user_id == User.id)
        .join(Unit, Unit.id == User.unit_id)
        .where(ApiToken.token_hash == token_digest(token))
    ).first()
    if row is None:
        raise Unauthorized("invalid bearer token")
    user, path, expires = row
    if expires < utcnow():
        raise Unauthorized("bearer token expired")
    if not user.active:
        raise Unauthorized("user is disabled")
    return Principal(user.id, user.username, Role(user.role), user.unit_id, path)


def revoke_tokens(session: Session, user_id: int, keep: str | None = None) -> None:
    """Delete the user's tokens (all, or all but the one whose digest is `keep`): REST refuses
    them at once, and the live feed ends their streams at its next check."""
    query = delete(ApiToken).where(ApiToken.user_id == user_id)
    if keep is not None:
        query = query.where(ApiToken.token_hash != keep)
    session.execute(query)


def revoke_token(session: Session, token: str) -> bool:
    """Sign-out: delete this one token; False when it was not there."""
    return bool(session.execute(delete(ApiToken).where(ApiToken.token_hash == token_digest(token))).rowcount)


def purge_expired_tokens(session: Session) -> int:
    """Delete tokens past their expiry (index ix_api_tokens_expires_at); how many went."""
    return int(session.execute(delete(ApiToken).where(ApiToken.expires_at < utcnow())).rowcount or 0)


def live_tokens(session: Session, digests: list[str]) -> dict[str, str]:
    """Of these token digests, those still valid (not expired, user active): digest → the
    materialised path of the user's unit now. One query for all the live feed's listeners."""
    found: dict[str, str] = {}
    for start in range(0, len(digests), 500):
        rows = session.execute(
            select(ApiToken.token_hash, Unit.path)
            .join(User, User.id == ApiToken.user_id)
            .join(Unit, Unit.id == User.unit_id)
            .where(ApiToken.token_hash.in_(digests[start:start + 500]), ApiToken.expires_at > utcnow(),
                   User.active.is_(True)))
        found.update({digest: path for digest, path in rows})
    return found
