from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from api.auth import Role
from ingest.fields import DbId, Name

Username = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")]
Password = Annotated[SecretStr, Field(min_length=8, max_length=256)]


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


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str | None
    role: Role
    unit_id: int
    active: bool
    created_at: datetime
