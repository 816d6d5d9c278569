from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from registry.fields import DbId, Name
from registry.users import Role

USERNAME_PATTERN = r"^[A-Za-z0-9_.@-]+$"  # ASCII only: lower() is the same on SQLite and PostgreSQL
Username = Annotated[str, Field(min_length=1, max_length=64, pattern=USERNAME_PATTERN,
                                description="unique in any case: `Zhang` and `zhang` are one name")]
#: the policy (length, common passwords, not the username) is checked by the route: api/passwords.py
Password = Annotated[SecretStr, Field(min_length=1, max_length=256)]


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    password: Annotated[SecretStr, Field(min_length=1, max_length=256)]


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    password: Password
    role: Role
    unit_id: DbId
    display_name: Name | None = None


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: Password | None = None
    role: Role | None = None
    unit_id: DbId | None = None
    display_name: Name | None = None
    active: bool | None = None


class PasswordChange(BaseModel):
    """A person changing their own password: the old one proves it is them, not someone at
    their unlocked console."""

    model_config = ConfigDict(extra="forbid")

    old_password: Annotated[SecretStr, Field(min_length=1, max_length=256)]
    new_password: Password


class TooManyTries(BaseModel):
    detail: str
    field: str
    retry_after: int


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str | None
    role: Role
    unit_id: int
    active: bool
    created_at: datetime
