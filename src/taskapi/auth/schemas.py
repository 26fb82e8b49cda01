"""Request and response bodies of the auth and /users/me endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
)
from pydantic.config import JsonDict

from taskapi.auth.models import PERSONAL_TOKEN_NAME_MAX_LENGTH, Scope
from taskapi.core.schemas import Omittable
from taskapi.core.text import NoNul

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
PASSWORD_SPECIALS = "!@#$%^&*"  # noqa: S105 (the rule's character set, not a secret)
OPAQUE_TOKEN_MAX_LENGTH = 256


def _strong_password(value: str) -> str:
    missing = []
    if not any(char.isupper() for char in value):
        missing.append("an uppercase letter")
    if not any(char.isdecimal() for char in value):
        missing.append("a digit")
    if not any(char in PASSWORD_SPECIALS for char in value):
        missing.append(f"one of {PASSWORD_SPECIALS}")
    if missing:
        raise ValueError(f"Password must contain {', '.join(missing)}")
    return value


Email = Annotated[EmailStr, AfterValidator(str.lower)]
"""Emails are compared and stored in lowercase."""

NewPassword = Annotated[
    str,
    # The length bound runs before the rules and long before argon2: a megabyte-long
    # password is a cheap 400, not a CPU stall.
    Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH),
    AfterValidator(_strong_password),
]
GivenPassword = Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)]
FullName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NoNul()
]
OpaqueToken = Annotated[str, Field(min_length=1, max_length=OPAQUE_TOKEN_MAX_LENGTH)]

EXAMPLE_EMAIL = "ada@example.com"
EXAMPLE_PASSWORD = "Str0ng!Passw0rd"  # noqa: S105 (documentation example)
EXAMPLE_TOKEN = "9f2c4e1a7b3d5f60" * 4
EXAMPLE_USER: JsonDict = {
    "id": "01937a4e-8c2b-7e41-9a57-3c1d2b4e5f60",
    "email": EXAMPLE_EMAIL,
    "full_name": "Ada Lovelace",
    "is_active": True,
    "created_at": "2026-11-21T08:00:00Z",
    "updated_at": "2026-11-21T08:00:00Z",
}


def _example(example: JsonDict) -> ConfigDict:
    return ConfigDict(json_schema_extra={"example": example})


class RegisterRequest(BaseModel):
    model_config = _example(
        {"email": EXAMPLE_EMAIL, "password": EXAMPLE_PASSWORD, "full_name": "Ada Lovelace"}
    )

    email: Email
    password: NewPassword
    full_name: FullName


class LoginRequest(BaseModel):
    model_config = _example({"email": EXAMPLE_EMAIL, "password": EXAMPLE_PASSWORD})

    email: Email
    password: GivenPassword


class LoginForm(BaseModel):
    """OAuth2 password-grant form, as Swagger's Authorize button sends it."""

    model_config = _example(
        {"username": EXAMPLE_EMAIL, "password": EXAMPLE_PASSWORD, "grant_type": "password"}
    )

    username: Email
    password: GivenPassword
    grant_type: Omittable[Literal["password"]] = None


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"example": EXAMPLE_USER})

    id: uuid.UUID
    email: str
    full_name: str
    is_active: bool
    """False until the email address is verified."""
    created_at: datetime
    updated_at: datetime


class TokenResponse(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIwMTkzIn0.c2ln",
                "refresh_token": EXAMPLE_TOKEN,
                "token_type": "bearer",
                "expires_in": 900,
                "user": EXAMPLE_USER,
            }
        },
    )

    access_token: str
    refresh_token: str | None = Field(
        description="null when it was set as a cookie instead (`X-Token-Transport: cookie`)."
    )
    token_type: Literal["bearer"]
    expires_in: int = Field(description="Seconds until the access token expires.")
    user: UserRead


class VerifyEmailRequest(BaseModel):
    model_config = _example({"token": EXAMPLE_TOKEN})

    token: OpaqueToken


class EmailRequest(BaseModel):
    model_config = _example({"email": EXAMPLE_EMAIL})

    email: Email


class RefreshRequest(BaseModel):
    model_config = _example({"refresh_token": EXAMPLE_TOKEN})

    refresh_token: OpaqueToken


class ResetPasswordRequest(BaseModel):
    model_config = _example({"token": EXAMPLE_TOKEN, "new_password": "N3w!Passw0rd"})

    token: OpaqueToken
    new_password: NewPassword


class ChangePasswordRequest(BaseModel):
    model_config = _example({"current_password": EXAMPLE_PASSWORD, "new_password": "N3w!Passw0rd"})

    current_password: GivenPassword
    new_password: NewPassword


class UserUpdate(BaseModel):
    """An absent field stays as it is."""

    model_config = _example({"full_name": "Augusta Ada King"})

    full_name: Omittable[FullName] = None


class Accepted(BaseModel):
    model_config = _example(
        {"detail": "If the address belongs to an account, an email is on its way."}
    )

    detail: str


class SessionRead(BaseModel):
    """One sign-in (a refresh-token family) that can still be refreshed."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "01937a4e-8c2b-7e41-9a57-3c1d2b4e5f61",
                "created_at": "2026-11-21T08:00:00Z",
                "last_used_at": "2026-11-21T09:45:00Z",
                "expires_at": "2026-11-28T09:45:00Z",
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
                "ip": "203.0.113.7",
                "current": True,
            }
        },
    )

    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime = Field(description="The sign-in or the latest refresh.")
    expires_at: datetime = Field(description="When it can no longer be refreshed.")
    user_agent: str | None
    ip: str | None = Field(description="The client address at sign-in.")
    current: bool = Field(description="Whether this is the session of the calling token.")


class SessionList(BaseModel):
    items: list[SessionRead] = Field(description="Newest first.")


TokenName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=PERSONAL_TOKEN_NAME_MAX_LENGTH
    ),
    NoNul(),
]
EXAMPLE_PERSONAL_TOKEN: JsonDict = {
    "id": "01937a4e-8c2b-7e41-9a57-3c1d2b4e5f62",
    "name": "Calendar sync",
    "scopes": ["tasks:read", "tasks:write"],
    "created_at": "2026-11-21T08:00:00Z",
    "expires_at": "2027-02-19T08:00:00Z",
    "last_used_at": "2026-11-21T09:45:00Z",
}


class PersonalTokenCreate(BaseModel):
    model_config = _example(
        {"name": "Calendar sync", "scopes": ["tasks:read", "tasks:write"], "expires_in_days": 90}
    )

    name: TokenName
    scopes: list[Scope] = Field(
        min_length=1,
        max_length=len(Scope),
        description="What the token may do; a repeated scope counts once.",
    )
    expires_in_days: int | None = Field(
        default=None, ge=1, le=365, description="Days until it stops working; null: never."
    )


class PersonalTokenRead(BaseModel):
    """A token as listed: never its value."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"example": EXAMPLE_PERSONAL_TOKEN}
    )

    id: uuid.UUID
    name: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None = Field(description="null: never.")
    last_used_at: datetime | None = Field(description="To the minute; null: never used.")


class PersonalTokenCreated(PersonalTokenRead):
    """The new token with its value, shown this once: store it now."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                **EXAMPLE_PERSONAL_TOKEN,
                "token": "tapi_" + "Xk3vQ9-_" * 5 + "a1b",
                "last_used_at": None,
            }
        }
    )

    token: str = Field(description="`tapi_` and 43 url-safe characters; not shown again.")


class PersonalTokenList(BaseModel):
    items: list[PersonalTokenRead] = Field(description="Newest first; expired ones left out.")
