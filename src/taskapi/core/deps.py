"""Annotated dependency aliases that routers declare: SessionDep, CurrentUser, ActiveUser,
UserCacheDep."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth import service as auth_service
from taskapi.auth.cache import UserCache
from taskapi.auth.models import User
from taskapi.core.config import Settings
from taskapi.core.db import session_per_request
from taskapi.core.errors import EmailNotVerified, Unauthorized
from taskapi.core.metrics import record_auth_failure
from taskapi.core.security import (
    AccessClaims,
    InvalidToken,
    PasswordHasher,
    decode_access_token,
)


async def get_settings_from_app(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_password_hasher(request: Request) -> PasswordHasher:
    hasher: PasswordHasher = request.app.state.password_hasher
    return hasher


async def get_user_cache(request: Request) -> UserCache:
    cache: UserCache = request.app.state.user_cache
    return cache


SettingsDep = Annotated[Settings, Depends(get_settings_from_app)]
SessionDep = Annotated[AsyncSession, Depends(session_per_request, scope="function")]
PasswordHasherDep = Annotated[PasswordHasher, Depends(get_password_hasher)]
UserCacheDep = Annotated[UserCache, Depends(get_user_cache)]

# auto_error=False: a missing token must answer our problem+json 401, not FastAPI's.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)


BearerToken = Annotated[str | None, Depends(oauth2_scheme)]


def _verified_claims(settings: Settings, token: str | None) -> AccessClaims:
    if not token:
        raise Unauthorized("Not authenticated")
    try:
        return decode_access_token(settings=settings, token=token)
    except InvalidToken as error:
        record_auth_failure("invalid_access_token")
        raise Unauthorized() from error


async def get_access_claims(settings: SettingsDep, token: BearerToken) -> AccessClaims:
    return _verified_claims(settings, token)


AccessClaimsDep = Annotated[AccessClaims, Depends(get_access_claims)]
"""The verified claims of the bearer token."""


async def _authenticate(request: Request, session: AsyncSession, token: str | None) -> User:
    """Detached (from the user cache): services load the row themselves to change it.

    Reads settings and cache straight from the app rather than through sub-dependencies:
    every dependency FastAPI resolves costs each authenticated request measurable time.
    """
    state = request.app.state
    claims = _verified_claims(state.settings, token)
    user = await auth_service.authenticate(session=session, cache=state.user_cache, claims=claims)
    request.state.user_id = str(user.id)
    return user


async def get_current_user(request: Request, session: SessionDep, token: BearerToken) -> User:
    return await _authenticate(request, session, token)


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_active_user(request: Request, session: SessionDep, token: BearerToken) -> User:
    """Task and category routes: an unverified account may sign in but not work yet."""
    user = await _authenticate(request, session, token)
    if request.app.state.settings.require_email_verification and not user.is_active:
        raise EmailNotVerified("Verify your email address before using this endpoint.")
    return user


ActiveUser = Annotated[User, Depends(get_active_user)]
