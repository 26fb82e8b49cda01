"""What routers declare to get the caller and auth's resources: `CurrentUser`, `ActiveUser`,
`AccessClaimsDep`, `ClientDep`, `UserCacheDep` and `PasswordHasherDep`.

The bearer token is verified here (signature, expiry, issuer, audience), then
`service.authenticate` finds the user it speaks for through the user cache.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.auth import families, service
from taskapi.auth.cache import UserCache
from taskapi.auth.metrics import record_auth_failure
from taskapi.auth.models import User
from taskapi.core.config import Settings, SettingsDep, SettingsState
from taskapi.core.db import SessionDep
from taskapi.core.errors import EmailNotVerified, Unauthorized
from taskapi.core.security import AccessClaims, InvalidToken, PasswordHasher, decode_access_token
from taskapi.core.state import lifespan_state


class AuthState(SettingsState):
    """The resources auth reads from the lifespan state."""

    user_cache: UserCache
    password_hasher: PasswordHasher


async def get_password_hasher(request: Request) -> PasswordHasher:
    return lifespan_state(request.scope, AuthState)["password_hasher"]


async def get_user_cache(request: Request) -> UserCache:
    return lifespan_state(request.scope, AuthState)["user_cache"]


async def get_client(request: Request) -> families.Client:
    """The client as a session records it; `request.client` already went through the
    trusted-proxy rule (ProxyHeadersMiddleware)."""
    return families.Client(
        user_agent=request.headers.get("user-agent") or None,
        ip=request.client.host if request.client else None,
    )


PasswordHasherDep = Annotated[PasswordHasher, Depends(get_password_hasher)]
UserCacheDep = Annotated[UserCache, Depends(get_user_cache)]
ClientDep = Annotated[families.Client, Depends(get_client)]

# auto_error=False: a missing token must answer our problem+json 401, not FastAPI's.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


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

    Reads settings and cache straight from the lifespan state rather than through
    sub-dependencies: every dependency FastAPI resolves costs each authenticated request
    measurable time.
    """
    state = lifespan_state(request.scope, AuthState)
    claims = _verified_claims(state["settings"], token)
    user = await service.authenticate(
        session=session, cache=state["user_cache"], settings=state["settings"], claims=claims
    )
    request.state.user_id = str(user.id)
    return user


async def get_current_user(request: Request, session: SessionDep, token: BearerToken) -> User:
    return await _authenticate(request, session, token)


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_active_user(request: Request, session: SessionDep, token: BearerToken) -> User:
    """Task and category routes: an unverified account may sign in but not work yet."""
    user = await _authenticate(request, session, token)
    settings = lifespan_state(request.scope, AuthState)["settings"]
    if settings.require_email_verification and not user.is_active:
        raise EmailNotVerified("Verify your email address before using this endpoint.")
    return user


ActiveUser = Annotated[User, Depends(get_active_user)]
